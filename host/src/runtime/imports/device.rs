use crate::runtime::bindings::ohos::cloudsync::device;
use crate::runtime::state::HostState;

impl device::Host for HostState {
    fn status(&mut self) -> device::DeviceStatus {
        let s = self.timed(|s| s.b.device.state());
        device::DeviceStatus {
            network_available: s.network_available,
            wifi_available: s.wifi_available,
            battery_percent: s.battery_percent,
            charging: s.charging,
            wifi_only: s.wifi_only,
            overheated: s.overheated,
        }
    }

    fn now_ms(&mut self) -> u64 {
        self.b.device.now_ms()
    }

    fn device_name(&mut self) -> String {
        format!("{}-{}", self.b.device.name(), self.b.device_tag)
    }
}
