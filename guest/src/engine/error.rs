use std::fmt;

/// The seed's numeric error codes.
pub use cloudsync_contract::codes;

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
