//! The device's status: network, battery, free space, clock. Real where the
//! machine has it, simulated for tests.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the engine asks about the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceState {
    pub network_available: bool,
    pub wifi_available: bool,
    /// Percent; 100 when the device has no battery.
    pub battery_percent: u8,
    /// Charging, or on mains power.
    pub charging: bool,
}

impl Default for DeviceState {
    fn default() -> Self {
        DeviceState {
            network_available: true,
            wifi_available: true,
            battery_percent: 100,
            charging: true,
        }
    }
}

/// The device as the host sees it.
pub trait DeviceStatus: Send + Sync + 'static {
    fn state(&self) -> DeviceState;
    /// Bytes still free for an unprivileged writer on the file system of `path`.
    fn free_space(&self, path: &Path) -> std::io::Result<u64>;
    /// Bytes the app may still write, where a quota applies (`None`: only the disk limits it).
    fn write_quota(&self) -> Option<u64> {
        None
    }
    /// A short name, used in conflict copy names.
    fn name(&self) -> String;
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// This machine: network from `/sys/class/net`, battery from
/// `/sys/class/power_supply`, free space from `statvfs`.
#[derive(Debug, Default)]
pub struct SystemDevice;

impl DeviceStatus for SystemDevice {
    fn state(&self) -> DeviceState {
        let network_available = network();
        let (battery_percent, charging) = battery();
        // A wired network is unmetered, like Wi-Fi: only a metered-only
        // device would report WIFI_UNAVAILABLE, and a PC is not one.
        DeviceState {
            network_available,
            wifi_available: network_available,
            battery_percent,
            charging,
        }
    }

    fn free_space(&self, path: &Path) -> std::io::Result<u64> {
        let s = rustix::fs::statvfs(path)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }

    fn name(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "device".into())
    }
}

/// Any interface but loopback that is up (or reports `unknown`, as virtual
/// ones do). Without `/sys`,
/// the network is assumed to be there.
fn network() -> bool {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return true;
    };
    let mut any = false;
    for entry in entries.flatten() {
        if entry.file_name() == "lo" {
            continue;
        }
        let state = std::fs::read_to_string(entry.path().join("operstate")).unwrap_or_default();
        if matches!(state.trim(), "up" | "unknown") {
            any = true;
        }
    }
    any
}

/// The first battery's charge and whether it charges; (100, true) without one.
fn battery() -> (u8, bool) {
    let Ok(entries) = std::fs::read_dir("/sys/class/power_supply") else {
        return (100, true);
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if std::fs::read_to_string(p.join("type")).unwrap_or_default().trim() != "Battery" {
            continue;
        }
        let capacity = std::fs::read_to_string(p.join("capacity"))
            .ok()
            .and_then(|c| c.trim().parse::<u8>().ok());
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        if let Some(c) = capacity {
            return (
                c.min(100),
                matches!(status.trim(), "Charging" | "Full" | "Not charging"),
            );
        }
    }
    (100, true)
}

/// A device whose every reading is set by the test or the embedder.
#[derive(Debug)]
pub struct SimulatedDevice {
    inner: Mutex<Simulated>,
}

#[derive(Debug, Clone)]
struct Simulated {
    state: DeviceState,
    free_space: Option<u64>,
    write_quota: Option<u64>,
    now_ms: Option<u64>,
}

impl Default for SimulatedDevice {
    fn default() -> Self {
        SimulatedDevice {
            inner: Mutex::new(Simulated {
                state: DeviceState::default(),
                free_space: None,
                write_quota: None,
                now_ms: None,
            }),
        }
    }
}

impl SimulatedDevice {
    pub fn set_state(&self, state: DeviceState) {
        self.inner.lock().unwrap().state = state;
    }
    pub fn set_network(&self, available: bool) {
        self.inner.lock().unwrap().state.network_available = available;
    }
    /// Free space to report (`None`: the real file system's).
    pub fn set_free_space(&self, bytes: Option<u64>) {
        self.inner.lock().unwrap().free_space = bytes;
    }
    /// Writes beyond this many more bytes fail with "no space" (`None`: no quota).
    pub fn set_write_quota(&self, bytes: Option<u64>) {
        self.inner.lock().unwrap().write_quota = bytes;
    }
    pub fn set_now_ms(&self, ms: Option<u64>) {
        self.inner.lock().unwrap().now_ms = ms;
    }
}

impl DeviceStatus for SimulatedDevice {
    fn state(&self) -> DeviceState {
        self.inner.lock().unwrap().state
    }
    fn free_space(&self, path: &Path) -> std::io::Result<u64> {
        match self.inner.lock().unwrap().free_space {
            Some(bytes) => Ok(bytes),
            None => SystemDevice.free_space(path),
        }
    }
    fn write_quota(&self) -> Option<u64> {
        self.inner.lock().unwrap().write_quota
    }
    fn name(&self) -> String {
        "simulated".into()
    }
    fn now_ms(&self) -> u64 {
        let fixed = self.inner.lock().unwrap().now_ms;
        fixed.unwrap_or_else(|| SystemDevice.now_ms())
    }
}
