//! Who calls and where things are, from the command's arguments and
//! environment: the same options the native command line takes (`--root`,
//! `--cloud`, `--app`, `--permission`, `--not-system-app`, and
//! `CLOUDSYNC_ROOT`, `CLOUDSYNC_CLOUD`, `CLOUDSYNC_APP`). Every component of
//! a composition sees the one set of arguments the runtime was given.

pub use cloudsync_contract::{CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER, GALLERY_BUNDLE};
/// The app a command acts for when none is named.
pub const DEFAULT_APP: &str = "cloudsync.cli";

/// Where the cloud is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudAt {
    /// A folder (`dir:///path`).
    Folder(String),
    /// A WebDAV server (`webdav://host[:port]/path`, `webdavs://` for
    /// HTTPS), reached through wasi:http, with Basic credentials from
    /// `CLOUDSYNC_WEBDAV_USERNAME` / `CLOUDSYNC_WEBDAV_PASSWORD`.
    WebDav {
        url: String,
        user: Option<(String, String)>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The device side: `apps/<bundle>/` and the metadata journal.
    pub root: Option<String>,
    /// The cloud.
    pub cloud: Option<CloudAt>,
    pub bundle: String,
    pub permissions: Vec<String>,
    pub system_app: bool,
    pub device_name: String,
}

impl Config {
    /// From the arguments (the program name first) and `env`.
    pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let mut root = env("CLOUDSYNC_ROOT");
        let mut cloud = env("CLOUDSYNC_CLOUD");
        let mut bundle = env("CLOUDSYNC_APP");
        let mut only: Vec<String> = Vec::new();
        let mut system_app = true;
        let mut i = 1;
        while i < args.len() {
            let arg = &args[i];
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || -> Result<String, String> {
                if let Some(v) = inline.clone() {
                    return Ok(v);
                }
                i += 1;
                args.get(i).cloned().ok_or_else(|| format!("{name} needs a value"))
            };
            match name {
                "--root" => root = Some(value()?),
                "--cloud" => cloud = Some(value()?),
                "--app" => bundle = Some(value()?),
                "--permission" => only.push(value()?),
                "--not-system-app" => system_app = false,
                _ => {}
            }
            i += 1;
        }
        let bundle = bundle.unwrap_or_else(|| DEFAULT_APP.to_string());
        if !cloudsync_contract::is_bundle_name(&bundle) || bundle == GALLERY_BUNDLE {
            return Err(format!("{bundle:?} is not an app's bundle name"));
        }
        let cloud = match cloud {
            Some(url) => Some(cloud_at(&url, env)?),
            None => root
                .as_ref()
                .map(|r| CloudAt::Folder(format!("{}/cloud", r.trim_end_matches('/')))),
        };
        let permissions = if only.is_empty() {
            vec![CLOUDFILE_SYNC.to_string(), CLOUDFILE_SYNC_MANAGER.to_string()]
        } else {
            only
        };
        Ok(Config {
            root: root.map(|r| r.trim_end_matches('/').to_string()),
            cloud,
            bundle,
            permissions,
            system_app,
            device_name: env("CLOUDSYNC_DEVICE_NAME").unwrap_or_else(|| "wasi".to_string()),
        })
    }

    pub fn has_permission(&self, name: &str) -> bool {
        self.permissions.iter().any(|p| p == name)
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

/// The cloud a URL names: `dir:///path` or `webdav(s)://host/path`.
fn cloud_at(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<CloudAt, String> {
    if let Some(path) = url.strip_prefix("dir://") {
        return match path {
            "/" => Err(format!("{url}: the cloud cannot be the whole file system")),
            p if p.starts_with('/') => Ok(CloudAt::Folder(p.trim_end_matches('/').to_string())),
            _ => Err(format!("{url}: a dir:// cloud needs an absolute path (dir:///cloud)")),
        };
    }
    let web = url
        .strip_prefix("webdav://")
        .map(|rest| ("http", rest))
        .or_else(|| url.strip_prefix("webdavs://").map(|rest| ("https", rest)));
    let Some((scheme, rest)) = web else {
        return Err(format!(
            "{url}: on WASI the cloud is a folder (dir:///path) or a WebDAV server (webdav://host/path); \
             the native cloudsync also speaks s3://"
        ));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url}: no host (webdav://host[:port]/path)"));
    }
    if host.contains('@') {
        return Err(
            "a WebDAV URL carries no credentials: set CLOUDSYNC_WEBDAV_USERNAME and CLOUDSYNC_WEBDAV_PASSWORD".into(),
        );
    }
    let user = env("CLOUDSYNC_WEBDAV_USERNAME").map(|u| (u, env("CLOUDSYNC_WEBDAV_PASSWORD").unwrap_or_default()));
    Ok(CloudAt::WebDav {
        url: format!("{scheme}://{rest}"),
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        std::iter::once("cloudsync")
            .chain(list.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn the_native_options_and_environment() {
        let none = |_: &str| None;
        let c = Config::parse(&args(&["--root", "/device/", "--cloud=dir:///cloud", "sync"]), &none).unwrap();
        assert_eq!(c.root.as_deref(), Some("/device"));
        assert_eq!(c.cloud, Some(CloudAt::Folder("/cloud".into())));
        assert_eq!(c.bundle, DEFAULT_APP);
        assert!(c.system_app && c.may_act_for("media") && c.may_act_for("other.app"));

        let env = |k: &str| (k == "CLOUDSYNC_ROOT").then(|| "/d".to_string());
        let c = Config::parse(
            &args(&["--permission", CLOUDFILE_SYNC, "--not-system-app", "--app", "com.a"]),
            &env,
        )
        .unwrap();
        assert_eq!(c.cloud, Some(CloudAt::Folder("/d/cloud".into())));
        assert!(!c.may_act_for("media") && !c.may_act_for("other.app") && c.may_act_for("com.a"));
        assert!(Config::parse(&args(&["--cloud", "s3://bucket"]), &none).is_err());
        assert!(Config::parse(&args(&["--cloud", "dir:///"]), &none).is_err());
        assert!(Config::parse(&args(&["--cloud", "webdav://"]), &none).is_err());
        assert!(Config::parse(&args(&["--cloud", "webdav://u:p@h/dav"]), &none).is_err());
        let creds = |k: &str| match k {
            "CLOUDSYNC_WEBDAV_USERNAME" => Some("me".to_string()),
            "CLOUDSYNC_WEBDAV_PASSWORD" => Some("pw".to_string()),
            _ => None,
        };
        let c = Config::parse(&args(&["--cloud", "webdavs://h:8443/dav"]), &creds).unwrap();
        assert_eq!(
            c.cloud,
            Some(CloudAt::WebDav {
                url: "https://h:8443/dav".into(),
                user: Some(("me".into(), "pw".into())),
            })
        );
        assert!(Config::parse(&args(&["--root"]), &none).is_err());
        assert!(Config::parse(&args(&["--app", ""]), &none).is_err());
        assert!(Config::parse(&args(&["--app", "media"]), &none).is_err());
    }
}
