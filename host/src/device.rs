//! The device's status: network, battery, temperature, free space, clock.
//! Real where the machine has it, simulated for tests.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the engine asks about the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceState {
    /// Some network is up.
    pub network_available: bool,
    /// An unmetered network (Wi-Fi, wired) is up.
    pub wifi_available: bool,
    /// Percent; 100 when the device has no battery.
    pub battery_percent: u8,
    /// Charging, or on mains power.
    pub charging: bool,
    /// The user's setting: sync on Wi-Fi (unmetered networks) only.
    pub wifi_only: bool,
    /// The device is hotter than its thermal limit.
    pub overheated: bool,
}

impl Default for DeviceState {
    fn default() -> Self {
        DeviceState {
            network_available: true,
            wifi_available: true,
            battery_percent: 100,
            charging: true,
            wifi_only: false,
            overheated: false,
        }
    }
}

/// The device as the host sees it.
pub trait DeviceStatus: Send + Sync + 'static {
    /// The current readings.
    fn state(&self) -> DeviceState;
    /// Bytes still free for an unprivileged writer on the file system of `path`.
    fn free_space(&self, path: &Path) -> std::io::Result<u64>;
    /// Bytes the app may still write, where a quota applies (`None`: only the disk limits it).
    fn write_quota(&self) -> Option<u64> {
        None
    }
    /// A short name, used in conflict copy names.
    fn name(&self) -> String;
    /// The time now, epoch ms (default: the system clock).
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// This machine: networks from `/sys/class/net`, battery from
/// `/sys/class/power_supply`, temperature from `/sys/class/thermal`, free
/// space from `statvfs`. `CLOUDSYNC_SYS_NET`, `CLOUDSYNC_SYS_POWER` and
/// `CLOUDSYNC_SYS_THERMAL` name other folders laid out the same way (tests,
/// containers that mount the host's `/sys` elsewhere).
#[derive(Debug, Default)]
pub struct SystemDevice {
    wifi_only: bool,
    /// The last reading: the engine asks often, `/sys` is read once a second.
    cached: Mutex<Option<(Instant, DeviceState)>>,
}

/// How long one reading of `/sys` stands.
const READING_STANDS: Duration = Duration::from_secs(1);

impl SystemDevice {
    /// The user's setting: sync only while an unmetered network (Wi-Fi,
    /// wired) is up; on a metered one (a mobile modem) runs fail with
    /// WIFI_UNAVAILABLE.
    pub fn wifi_only(wifi_only: bool) -> Self {
        SystemDevice {
            wifi_only,
            ..SystemDevice::default()
        }
    }
}

fn sys_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

impl DeviceStatus for SystemDevice {
    fn state(&self) -> DeviceState {
        let mut cached = self.cached.lock().unwrap();
        if let Some((at, state)) = *cached {
            if at.elapsed() < READING_STANDS {
                return state;
            }
        }
        let (network_available, wifi_available) = networks(&sys_dir("CLOUDSYNC_SYS_NET", "/sys/class/net"));
        let (battery_percent, charging) = battery(&sys_dir("CLOUDSYNC_SYS_POWER", "/sys/class/power_supply"));
        let state = DeviceState {
            network_available,
            wifi_available,
            battery_percent,
            charging,
            wifi_only: self.wifi_only,
            overheated: overheated(&sys_dir("CLOUDSYNC_SYS_THERMAL", "/sys/class/thermal")),
        };
        *cached = Some((Instant::now(), state));
        state
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

/// (any network, an unmetered one): any interface but loopback that is up
/// (or reports `unknown`, as virtual ones do); metered are the mobile
/// modems and tethers (`DEVTYPE=wwan`, or named as Linux and phones name
/// them: `wwan…`, `rmnet…`, `ccmni…`, `ppp…`, `usb…`), unmetered the rest
/// (Wi-Fi, wired). Without `/sys`, an unmetered network is assumed.
fn networks(dir: &Path) -> (bool, bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (true, true);
    };
    let (mut any, mut unmetered) = (false, false);
    for entry in entries.flatten() {
        if entry.file_name() == "lo" {
            continue;
        }
        let state = std::fs::read_to_string(entry.path().join("operstate")).unwrap_or_default();
        if !matches!(state.trim(), "up" | "unknown") {
            continue;
        }
        any = true;
        let uevent = std::fs::read_to_string(entry.path().join("uevent")).unwrap_or_default();
        let name = entry.file_name().to_string_lossy().into_owned();
        let metered = uevent.lines().any(|l| l.trim() == "DEVTYPE=wwan")
            || ["wwan", "rmnet", "ccmni", "ppp", "usb"]
                .iter()
                .any(|p| name.starts_with(p));
        unmetered |= !metered;
    }
    (any, unmetered)
}

/// A zone this hot (°C) is too hot where it names no limit of its own.
const DEFAULT_LIMIT_C: i64 = 90;

/// Whether any thermal zone is at or above its limit: its lowest `hot` or
/// `critical` trip point (the kernel's own "too hot"), else 90 °C.
fn overheated(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let read = |p: PathBuf| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("thermal_zone") {
            continue;
        }
        let zone = entry.path();
        // Millidegrees Celsius.
        let Some(temp) = read(zone.join("temp")).and_then(|t| t.parse::<i64>().ok()) else {
            continue;
        };
        let limit = (0..32)
            .map_while(|i| read(zone.join(format!("trip_point_{i}_type"))).map(|t| (i, t)))
            .filter(|(_, t)| t == "hot" || t == "critical")
            .filter_map(|(i, _)| read(zone.join(format!("trip_point_{i}_temp")))?.parse::<i64>().ok())
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(DEFAULT_LIMIT_C * 1000);
        if temp >= limit {
            return true;
        }
    }
    false
}

/// The first battery's charge and whether it charges; (100, true) without one.
fn battery(dir: &Path) -> (u8, bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
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
    /// Sets the whole state at once.
    pub fn set_state(&self, state: DeviceState) {
        self.inner.lock().unwrap().state = state;
    }
    /// Sets whether a network is up.
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
    /// Fixes the clock at `ms` (`None`: the system clock).
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
            None => SystemDevice::default().free_space(path),
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
        fixed.unwrap_or_else(|| SystemDevice::default().now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_zone_at_its_hot_trip_point_is_too_hot() {
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("thermal_zone0");
        write(&zone.join("temp"), "71000\n");
        write(&zone.join("trip_point_0_type"), "passive\n");
        write(&zone.join("trip_point_0_temp"), "50000\n");
        write(&zone.join("trip_point_1_type"), "hot\n");
        write(&zone.join("trip_point_1_temp"), "75000\n");
        write(&zone.join("trip_point_2_type"), "critical\n");
        write(&zone.join("trip_point_2_temp"), "95000\n");
        assert!(!overheated(dir.path()), "a passive trip point only throttles");
        write(&zone.join("temp"), "75000\n");
        assert!(overheated(dir.path()));
        // A zone without limits of its own: 90 °C.
        let other = dir.path().join("thermal_zone1");
        write(&other.join("temp"), "89000");
        write(&zone.join("temp"), "20000");
        assert!(!overheated(dir.path()));
        write(&other.join("temp"), "90000");
        assert!(overheated(dir.path()));
        assert!(!overheated(&dir.path().join("none")));
    }

    #[test]
    fn a_mobile_modem_is_a_metered_network() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("lo/operstate"), "unknown");
        write(&dir.path().join("wwan0/operstate"), "up");
        write(&dir.path().join("usb0/operstate"), "up");
        write(&dir.path().join("usb0/uevent"), "INTERFACE=usb0\nDEVTYPE=wwan\n");
        write(&dir.path().join("wlan0/operstate"), "down");
        assert_eq!(networks(dir.path()), (true, false));
        // A phone's mobile data, by the names its kernels give it.
        write(&dir.path().join("rmnet_data0/operstate"), "up");
        write(&dir.path().join("ccmni0/operstate"), "up");
        assert_eq!(networks(dir.path()), (true, false));
        write(&dir.path().join("wlan0/operstate"), "up");
        assert_eq!(networks(dir.path()), (true, true));
        for i in ["wwan0", "usb0", "wlan0", "rmnet_data0", "ccmni0"] {
            write(&dir.path().join(i).join("operstate"), "down");
        }
        assert_eq!(networks(dir.path()), (false, false));
    }
}
