//! Who calls the API: the app the engine acts for, and what it was granted.

use std::collections::BTreeSet;

pub use cloudsync_contract::{CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER, GALLERY_BUNDLE};

/// The calling app and its grants; the component asks about them through
/// the `permission` import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The app's bundle name.
    pub bundle: String,
    /// Permissions granted (`ohos.permission.…`).
    pub permissions: BTreeSet<String>,
    /// Whether it is a system app (the system APIs need one).
    pub system_app: bool,
}

impl Identity {
    /// An ordinary app: no permissions, not a system app.
    pub fn app(bundle: impl Into<String>) -> Self {
        Identity {
            bundle: bundle.into(),
            permissions: BTreeSet::new(),
            system_app: false,
        }
    }

    /// The device's owner: a system app holding every cloud-sync permission.
    pub fn system(bundle: impl Into<String>) -> Self {
        Identity {
            bundle: bundle.into(),
            permissions: [CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER]
                .into_iter()
                .map(String::from)
                .collect(),
            system_app: true,
        }
    }

    /// Whether the permission `name` was granted.
    pub fn has_permission(&self, name: &str) -> bool {
        self.permissions.contains(name)
    }

    /// Whether the caller may touch `bundle`'s files: its own, any with
    /// `CLOUDFILE_SYNC_MANAGER`, and the gallery's as a system app holding
    /// `CLOUDFILE_SYNC`.
    pub fn may_act_for(&self, bundle: &str) -> bool {
        bundle == self.bundle
            || self.has_permission(CLOUDFILE_SYNC_MANAGER)
            || (bundle == GALLERY_BUNDLE && self.system_app && self.has_permission(CLOUDFILE_SYNC))
    }
}

/// A bundle name that is safe as a folder name (the contract's rule).
pub fn is_valid_bundle(bundle: &str) -> bool {
    cloudsync_contract::is_bundle_name(bundle)
}

/// The policy every import consults: who calls, whom it may act for,
/// which apps may sync now, and how often a user may start downloads. The
/// [`Granted`] default is what the [`RuntimeBuilder`](crate::RuntimeBuilder)
/// was given; an embedder with its own rules (a store of grants, a
/// per-user quota, a parental switch) gives its own through
/// `RuntimeBuilder::hooks`.
pub trait Hooks: Send + Sync {
    /// The calling app and its grants.
    fn caller(&self) -> &Identity;
    /// Whether the caller may touch `bundle`'s files and records.
    fn may_act_for(&self, bundle: &str) -> bool {
        self.caller().may_act_for(bundle)
    }
    /// Whether `bundle`'s cloud switch is on (off: its runs get 22400001).
    fn cloud_switch_on(&self, bundle: &str) -> bool;
    /// Counts one download the user asked for; an error saying the limit
    /// when it is used up (FREQUENT_USER_REQUESTS).
    fn admit_download(&self) -> Result<(), String>;
}

/// The default [`Hooks`]: a fixed caller, the apps whose switch is off, and
/// per-app download rates.
pub struct Granted {
    /// The caller.
    pub identity: Identity,
    /// The apps whose cloud switch is off.
    pub switched_off: BTreeSet<String>,
    /// Downloads each app may start per window.
    pub limits: RequestLimits,
}

impl Hooks for Granted {
    fn caller(&self) -> &Identity {
        &self.identity
    }

    fn cloud_switch_on(&self, bundle: &str) -> bool {
        !self.switched_off.contains(bundle)
    }

    fn admit_download(&self) -> Result<(), String> {
        let caller = &self.identity.bundle;
        self.limits.take(caller).map_err(|limit| {
            format!(
                "{caller} may start {} downloads per {:?}; try again later",
                limit.count, limit.window
            )
        })
    }
}

/// Who calls and what the device allows, as a user writes it (TOML):
///
/// ```toml
/// bundle = "com.example.notes"        # the calling app
/// system_app = false
/// permissions = ["ohos.permission.CLOUDFILE_SYNC"]
/// cloud_switch_off = ["com.example.games"]   # apps not allowed to sync
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The calling app (`None`: the default one).
    pub bundle: Option<String>,
    /// Whether the caller is a system app.
    #[serde(default)]
    pub system_app: bool,
    /// Permissions granted (only `CLOUDFILE_SYNC` and `CLOUDFILE_SYNC_MANAGER` are known).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Apps whose cloud switch is off: their runs are refused (22400001).
    #[serde(default)]
    pub cloud_switch_off: Vec<String>,
    /// Downloads each app may start per window, e.g. `"com.a" = "20/min"`
    /// (`/s`, `/min`, `/h`); one beyond fails with FREQUENT_USER_REQUESTS.
    #[serde(default)]
    pub request_limits: std::collections::BTreeMap<String, String>,
}

/// How many downloads an app may start per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimit {
    /// Requests allowed per window.
    pub count: u32,
    /// The window's length.
    pub window: std::time::Duration,
}

impl RequestLimit {
    /// `20/min`, `5/s`, `100/h`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (n, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a rate like 20/min"))?;
        let count: u32 = match n.trim().parse::<u64>() {
            Ok(0) | Err(_) => return Err(format!("{text:?}: {n:?} is not a count above 0")),
            Ok(c) => u32::try_from(c).map_err(|_| format!("{text:?}: at most {} requests per window", u32::MAX))?,
        };
        let window = match unit.trim() {
            "s" | "sec" => std::time::Duration::from_secs(1),
            "min" | "m" => std::time::Duration::from_secs(60),
            "h" | "hour" => std::time::Duration::from_secs(3600),
            other => return Err(format!("{text:?}: unknown unit {other:?} (use s, min or h)")),
        };
        Ok(RequestLimit { count, window })
    }
}

/// Per-app request counters over fixed windows, enforced by the host.
#[derive(Debug, Default)]
pub struct RequestLimits {
    limits: std::collections::BTreeMap<String, RequestLimit>,
    used: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>,
}

impl RequestLimits {
    /// Counters for `limits`, by bundle; a bundle not named has no limit.
    pub fn new(limits: std::collections::BTreeMap<String, RequestLimit>) -> Self {
        RequestLimits {
            limits,
            used: Default::default(),
        }
    }

    /// Counts one request of `bundle`; `Err` with the limit when it is used up.
    pub fn take(&self, bundle: &str) -> Result<(), RequestLimit> {
        let Some(limit) = self.limits.get(bundle).copied() else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        let mut used = self.used.lock().unwrap();
        let entry = used.entry(bundle.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= limit.window {
            *entry = (now, 0);
        }
        if entry.1 >= limit.count {
            return Err(limit);
        }
        entry.1 += 1;
        Ok(())
    }
}

/// Why a policy file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the policy file {path}: {source}")]
    Read {
        /// The policy file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid policy (bad TOML, an unknown key, permission or bundle name).
    #[error("the policy file {path} is not valid: {message}")]
    Invalid {
        /// The policy file's path.
        path: String,
        /// What is wrong in it.
        message: String,
    },
}

impl Policy {
    /// Reads and checks the policy file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, PolicyError> {
        let text = crate::textfile::read_settings(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and checks a policy's text: valid bundle names and rates, known
    /// permissions, and no caller named as the gallery's area.
    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: Policy = toml::from_str(text).map_err(|e| crate::textfile::settings_error(text, &e))?;
        for bundle in policy.bundle.iter().chain(&policy.cloud_switch_off) {
            if !is_valid_bundle(bundle) {
                return Err(format!("{bundle:?} is not a bundle name"));
            }
        }
        for (bundle, rate) in &policy.request_limits {
            if !is_valid_bundle(bundle) {
                return Err(format!("{bundle:?} is not a bundle name"));
            }
            RequestLimit::parse(rate)?;
        }
        if policy.bundle.as_deref() == Some(GALLERY_BUNDLE) {
            return Err(format!("{GALLERY_BUNDLE:?} is the gallery's own area, not an app"));
        }
        for p in &policy.permissions {
            if ![CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER].contains(&p.as_str()) {
                return Err(format!(
                    "unknown permission {p:?} (known: {CLOUDFILE_SYNC}, {CLOUDFILE_SYNC_MANAGER})"
                ));
            }
        }
        Ok(policy)
    }

    /// The caller this policy describes, acting as `default_bundle` when it names none.
    pub fn identity(&self, default_bundle: &str) -> Identity {
        Identity {
            bundle: self.bundle.clone().unwrap_or_else(|| default_bundle.to_string()),
            permissions: self.permissions.iter().cloned().collect(),
            system_app: self.system_app,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_refuse_what_they_do_not_know() {
        let p = Policy::parse(
            "bundle = \"com.a\"\nsystem_app = true\npermissions = [\"ohos.permission.CLOUDFILE_SYNC\"]\n\
             cloud_switch_off = [\"com.b\"]",
        )
        .unwrap();
        let id = p.identity("cloudsync.cli");
        assert_eq!(id.bundle, "com.a");
        assert!(id.system_app && id.has_permission(CLOUDFILE_SYNC) && !id.has_permission(CLOUDFILE_SYNC_MANAGER));
        assert!(id.may_act_for(GALLERY_BUNDLE) && !id.may_act_for("com.b"));
        assert_eq!(Policy::parse("").unwrap().identity("x"), Identity::app("x"));
        assert!(Policy::parse("permissions = [\"ohos.permission.ALL\"]").is_err());
        assert!(Policy::parse("bundle = \"../x\"").is_err());
        assert!(Policy::parse("admin = true").is_err());
        assert!(
            Policy::parse("bundle = \"media\"").is_err(),
            "the gallery's area is no app"
        );
        let p = Policy::parse("[request_limits]\n\"com.a\" = \"2/s\"").unwrap();
        assert_eq!(RequestLimit::parse(&p.request_limits["com.a"]).unwrap().count, 2);
        assert!(Policy::parse("[request_limits]\n\"com.a\" = \"2/week\"").is_err());
        let limits = RequestLimits::new([("com.a".to_string(), RequestLimit::parse("2/min").unwrap())].into());
        assert!(limits.take("com.a").is_ok() && limits.take("com.a").is_ok());
        assert!(limits.take("com.a").is_err(), "the third in the window");
        assert!(limits.take("com.b").is_ok(), "no limit set");
    }
}
