use std::fmt;

/// The seed's numeric error codes.
pub mod codes {
    pub const PERMISSION_DENIED: u32 = 201;
    pub const NOT_SYSTEM_APP: u32 = 202;
    pub const INVALID_PARAMETER: u32 = 401;
    pub const SERVICE_FAILED: u32 = 13_600_001;
    pub const NO_SUCH_FILE: u32 = 13_900_002;
    pub const NO_SPACE: u32 = 13_900_025;
    pub const INVALID_URI: u32 = 14_000_002;
    pub const CLOUD_NOT_READY: u32 = 22_400_001;
    pub const NETWORK_UNAVAILABLE: u32 = 22_400_002;
    pub const LOW_BATTERY: u32 = 22_400_003;
    pub const INTERNAL: u32 = 22_400_005;
    pub const ALREADY_RUNNING: u32 = 22_400_006;
}

/// A failed API call: a seed error code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMETER, message)
    }
    pub fn invalid_uri(uri: &str, why: &str) -> Self {
        Self::new(codes::INVALID_URI, format!("invalid URI {uri:?}: {why}"))
    }
    /// The service failed (13600001): a metadata or host failure.
    pub fn service(message: impl Into<String>) -> Self {
        Self::new(codes::SERVICE_FAILED, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}
