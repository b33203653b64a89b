//! Which cloud to use: a URL, plus credentials from the environment or a
//! TOML config file (never from the command line, where they would land in
//! the shell's history).
//!
//! - `dir:///path`: a local folder (the embedded default);
//! - `s3://bucket/prefix?endpoint=http://host:port&region=us-east-1`
//!   (`&virtual_host=true` for virtual-hosted-style buckets);
//! - `webdav://host[:port]/path` (HTTP) or `webdavs://…` (HTTPS).

use std::path::Path;
use std::sync::Arc;

use opendal::services::S3;
use opendal::Operator;
use serde::Deserialize;

use super::{Cloud, DalCloud, LocalFolderCloud, WebDavCloud};

/// Why cloud settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The URL has no scheme, or one other than `dir`, `s3`, `webdav` or `webdavs`.
    #[error("unsupported cloud {0:?}: use dir:///path, s3://bucket/prefix?endpoint=… or webdav://host/path")]
    Scheme(String),
    /// The URL is malformed (no bucket or host, a relative folder, an unknown parameter, ...).
    #[error("bad cloud URL {url:?}: {why}")]
    Url {
        /// The URL, credentials left out.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The config file could not be read or parsed.
    #[error("cannot read {path}: {why}")]
    File {
        /// The config file's path.
        path: String,
        /// Why it could not be read, or what is wrong in it.
        why: String,
    },
    /// The cloud could not be opened with these settings (a missing folder, half a key pair, ...).
    #[error("cannot use {url}: {why}")]
    Open {
        /// The URL, credentials left out.
        url: String,
        /// What failed.
        why: String,
    },
}

/// Settings of the `[cloud]` table of the config file; what is not set
/// there comes from the environment.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CloudSettings {
    /// The cloud URL (`dir://`, `s3://`, `webdav://` or `webdavs://`).
    pub url: Option<String>,
    /// S3 credentials (else `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`; none at all means anonymous access).
    pub access_key_id: Option<String>,
    /// S3 secret access key (set with `access_key_id`).
    pub secret_access_key: Option<String>,
    /// S3 session token, for temporary credentials.
    pub session_token: Option<String>,
    /// S3 region (else `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// WebDAV credentials (else `CLOUDSYNC_WEBDAV_USERNAME`, `CLOUDSYNC_WEBDAV_PASSWORD`).
    pub username: Option<String>,
    /// WebDAV password (needs `username`).
    pub password: Option<String>,
}

/// The whole config file: `root`, `app` and a `[cloud]` table, all optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The device side's root folder (a relative one is beside the config file).
    pub root: Option<String>,
    /// The calling app's bundle name.
    pub app: Option<String>,
    /// Sync on Wi-Fi (unmetered networks) only.
    #[serde(default)]
    pub wifi_only: bool,
    /// The `[cloud]` table.
    #[serde(default)]
    pub cloud: CloudSettings,
}

impl ConfigFile {
    /// Reads and parses the config file at `path` (unknown keys refused).
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = crate::textfile::read_settings(path).map_err(|e| SettingsError::File {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Self::parse(&text).map_err(|why| SettingsError::File {
            path: path.display().to_string(),
            why,
        })
    }

    /// The config file's text, read (unknown keys refused).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| crate::textfile::settings_error(text, &e))
    }
}

impl CloudSettings {
    /// Fills what is unset from the environment.
    pub fn with_env(mut self) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        self.access_key_id = self.access_key_id.or_else(|| env("AWS_ACCESS_KEY_ID"));
        self.secret_access_key = self.secret_access_key.or_else(|| env("AWS_SECRET_ACCESS_KEY"));
        self.session_token = self.session_token.or_else(|| env("AWS_SESSION_TOKEN"));
        self.region = self.region.or_else(|| env("AWS_REGION"));
        self.username = self.username.or_else(|| env("CLOUDSYNC_WEBDAV_USERNAME"));
        self.password = self.password.or_else(|| env("CLOUDSYNC_WEBDAV_PASSWORD"));
        self
    }
}

/// What a cloud URL names, before anything is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudUrl {
    /// `dir:///path`: an absolute folder.
    Dir(std::path::PathBuf),
    /// `s3://bucket/prefix?params`.
    S3 {
        /// `bucket/prefix` as written (it names the cloud in messages).
        location: String,
        /// The bucket's name.
        bucket: String,
        /// The key prefix inside the bucket (may be empty).
        prefix: String,
        /// The query's parameters (`endpoint`, `region`, ...), checked.
        params: Vec<(String, String)>,
    },
    /// `webdav://host[:port]/path` (`https` for `webdavs://`).
    WebDav {
        /// `webdavs://`: the server is reached over HTTPS.
        https: bool,
        /// `host[:port]`.
        host: String,
        /// The folder on the server (no leading `/`).
        path: String,
    },
}

/// Reads a cloud URL; touches nothing. Messages never show credentials.
pub fn parse_url(url: &str) -> Result<CloudUrl, SettingsError> {
    let bad = |why: &str| SettingsError::Url {
        url: redact(url),
        why: why.to_string(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| SettingsError::Scheme(redact(url)))?;
    match scheme {
        "dir" => {
            if rest.is_empty() {
                return Err(bad("no folder"));
            }
            if !rest.starts_with('/') {
                // `dir://relative/path` would silently depend on the
                // working folder: say what to write instead.
                let shown = redact(url);
                let shown = shown.strip_prefix("dir://").unwrap_or(&shown);
                return Err(bad(&format!(
                    "the folder must be an absolute path: dir:///{shown} or dir://$PWD/{shown}"
                )));
            }
            if rest.contains('\0') {
                return Err(bad("the path contains NUL"));
            }
            Ok(CloudUrl::Dir(rest.into()))
        }
        "s3" => {
            let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket"));
            }
            let params = parse_query(query).map_err(|w| bad(&w))?;
            match param(&params, "conditions") {
                None | Some("atomic") | Some("locked") => {}
                Some(other) => return Err(bad(&format!("conditions={other}: use atomic or locked"))),
            }
            Ok(CloudUrl::S3 {
                location: location.to_string(),
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                params,
            })
        }
        "webdav" | "webdavs" => {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host.is_empty() || host.contains('@') {
                return Err(bad("no host (credentials go in the config file or the environment)"));
            }
            Ok(CloudUrl::WebDav {
                https: scheme == "webdavs",
                host: host.to_string(),
                path: path.to_string(),
            })
        }
        _ => Err(SettingsError::Scheme(redact(url))),
    }
}

/// Opens the cloud `url` names, with `settings`' credentials.
pub fn open(url: &str, settings: &CloudSettings) -> Result<Arc<dyn Cloud>, SettingsError> {
    let open_err = |why: String| SettingsError::Open { url: redact(url), why };
    match parse_url(url)? {
        CloudUrl::Dir(folder) => {
            let cloud = LocalFolderCloud::new(folder).map_err(|e| open_err(e.to_string()))?;
            Ok(Arc::new(cloud))
        }
        CloudUrl::S3 {
            location,
            bucket,
            prefix,
            params,
        } => {
            let mut b = S3::default()
                .bucket(&bucket)
                .root(&format!("/{}", prefix.trim_matches('/')))
                .region(
                    param(&params, "region")
                        .or(settings.region.as_deref())
                        .unwrap_or("us-east-1"),
                )
                // Only what is configured here: no ~/.aws files, no instance
                // metadata, no ambient AWS_* variables read behind our back.
                .disable_config_load()
                .disable_ec2_metadata();
            if let Some(endpoint) = param(&params, "endpoint") {
                b = b.endpoint(endpoint);
            }
            if param(&params, "virtual_host") == Some("true") {
                b = b.enable_virtual_host_style();
            }
            match (&settings.access_key_id, &settings.secret_access_key) {
                (Some(id), Some(secret)) => {
                    b = b.access_key_id(id).secret_access_key(secret);
                    if let Some(token) = &settings.session_token {
                        b = b.session_token(token);
                    }
                }
                (None, None) => b = b.skip_signature(),
                _ => return Err(open_err("set both an access key id and a secret access key".into())),
            }
            let op = Operator::new(b).map_err(|e| open_err(e.to_string()))?;
            let mut cloud = DalCloud::new(op, format!("s3://{location}"));
            if param(&params, "etag_md5") == Some("false") {
                cloud = cloud.without_md5_etags();
            }
            // AWS checks conditions atomically; other stores are trusted to
            // only when the URL says so.
            let aws = param(&params, "endpoint").is_none_or(|e| e.contains(".amazonaws.com"));
            match param(&params, "conditions") {
                Some("atomic") => cloud = cloud.with_atomic_conditions(),
                None if aws => cloud = cloud.with_atomic_conditions(),
                _ => {}
            }
            Ok(Arc::new(cloud))
        }
        CloudUrl::WebDav { https, host, path } => {
            let auth = match (&settings.username, &settings.password) {
                (Some(u), p) => Some((u.clone(), p.clone().unwrap_or_default())),
                (None, Some(_)) => return Err(open_err("a WebDAV password needs a user name too".into())),
                (None, None) => None,
            };
            let http = if https { "https" } else { "http" };
            let scheme = if https { "webdavs" } else { "webdav" };
            let base = format!("{http}://{host}/{}", path.trim_matches('/'));
            let cloud =
                WebDavCloud::new(&base, auth, format!("{scheme}://{host}/{path}")).map_err(|e| SettingsError::Url {
                    url: redact(url),
                    why: e,
                })?;
            Ok(Arc::new(cloud))
        }
    }
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            match k {
                "endpoint" => {
                    let scheme_ok = v.strip_prefix("http://").or_else(|| v.strip_prefix("https://"));
                    match scheme_ok {
                        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok((k.to_string(), v.to_string())),
                        _ => Err(format!("endpoint {v:?} is not an http:// or https:// address")),
                    }
                }
                "region" | "virtual_host" | "etag_md5" | "conditions" => Ok((k.to_string(), v.to_string())),
                other => Err(format!(
                    "unknown parameter {other:?} (endpoint, region, virtual_host, etag_md5, conditions)"
                )),
            }
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A URL fit for messages: user info (`user:password@`) is never printed.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_of_url() {
        let s = CloudSettings {
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let url = format!("dir://{}", dir.path().display());
        assert!(open(&url, &s).unwrap().describe().starts_with("dir://"));
        assert_eq!(
            open("s3://bucket/pre/fix?endpoint=http://127.0.0.1:9&region=eu", &s)
                .unwrap()
                .describe(),
            "s3://bucket/pre/fix"
        );
        assert_eq!(
            open("webdav://127.0.0.1:8080/dav", &s).unwrap().describe(),
            "webdav://127.0.0.1:8080/dav"
        );
        for bad in [
            "ftp://x",
            "nothing",
            "s3:///prefix",
            "s3://b?color=red",
            "s3://b?endpoint=ftp://x",
            "s3://b?endpoint=127.0.0.1:9000",
            "s3://b?endpoint=http://",
            "dir://",
            "dir://relative/path",
            "webdav:///x",
        ] {
            assert!(open(bad, &s).is_err(), "{bad}");
        }
        let half = CloudSettings {
            access_key_id: Some("k".into()),
            ..Default::default()
        };
        assert!(open("s3://b", &half).is_err());
    }

    #[test]
    fn reads_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "app = \"com.a\"\n[cloud]\nurl = \"s3://b\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n",
        )
        .unwrap();
        let c = ConfigFile::load(&path).unwrap();
        assert_eq!(c.app.as_deref(), Some("com.a"));
        assert_eq!(c.cloud.url.as_deref(), Some("s3://b"));
        std::fs::write(&path, "[cloud]\npasword = \"typo\"\n").unwrap();
        assert!(
            ConfigFile::load(&path).is_err(),
            "unknown keys are refused, not ignored"
        );
    }

    #[test]
    fn messages_never_show_credentials() {
        assert_eq!(redact("webdav://user:secret@host/dav"), "webdav://…@host/dav");
        let e = parse_url("webdav://user:secret@host/dav").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        let e = parse_url("s3://user:secret@b?color=red").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        #[test]
        fn any_url_config_or_policy_text_is_read_or_refused_never_a_panic(
            scheme in proptest::prelude::prop_oneof![
                proptest::prelude::Just("dir://"), proptest::prelude::Just("s3://"),
                proptest::prelude::Just("webdav://"), proptest::prelude::Just("webdavs://"),
                proptest::prelude::Just(""),
            ],
            rest in "\\PC{0,60}",
            text in "\\PC{0,200}",
        ) {
            let url = format!("{scheme}{rest}");
            if let Ok(CloudUrl::Dir(p)) = parse_url(&url) {
                proptest::prop_assert!(p.is_absolute());
            }
            if let Err(e) = parse_url(&url) {
                // Whatever was after `user:` before `@` never shows (user
                // info, as URLs have it: before any `/`, `?` or `#`).
                if let Some((_, after)) = url.split_once("://") {
                    if let Some((creds, tail)) = after.split_once('@').filter(|(c, _)| !c.contains(['/', '?', '#'])) {
                        if let Some((_, secret)) = creds.split_once(':') {
                            if secret.len() > 3 && !tail.contains(secret) && !"webdav s3 dir no host bucket folder".contains(secret) {
                                proptest::prop_assert!(!e.to_string().contains(secret), "{e}");
                            }
                        }
                    }
                }
            }
            let _ = ConfigFile::parse(&text);
            let _ = crate::identity::Policy::parse(&text);
            let _ = crate::identity::RequestLimit::parse(&rest);
        }
    }
}
