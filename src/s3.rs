//! One way to build an S3 client from an environment's `S3Location`, shared by
//! the state backend and the bucket resource.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::env::model::S3Location;
use crate::env::secret::SecretError;

pub async fn client(loc: &S3Location, what: &str) -> Result<aws_sdk_s3::Client, SecretError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(loc.region.clone()))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(e) = &loc.endpoint {
        loader = loader.endpoint_url(e);
    }
    if let (Some(ak), Some(sk)) = (&loc.access_key, &loc.secret_key) {
        let ak = ak.resolve(&format!("{what}.access_key"))?;
        let sk = sk.resolve(&format!("{what}.secret_key"))?;
        loader = loader.credentials_provider(Credentials::new(
            ak.expose(),
            sk.expose(),
            None,
            None,
            "environment-file",
        ));
    }
    let shared = loader.load().await;
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(loc.path_style)
        // Many S3 servers other than AWS reject the SDK's default checksum headers.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Ok(aws_sdk_s3::Client::from_conf(conf))
}

/// HTTP status and S3 error code of an SDK error, for classification.
pub fn status_and_code<E: ProvideErrorMetadata, R: HttpStatus>(
    e: &SdkError<E, R>,
) -> (Option<u16>, Option<String>) {
    match e {
        SdkError::ServiceError(se) => (
            Some(se.raw().status_code()),
            se.err().code().map(str::to_owned),
        ),
        SdkError::ResponseError(re) => (Some(re.raw().status_code()), None),
        _ => (None, None),
    }
}

/// One-line description of an SDK error: never includes request headers or credentials.
pub fn describe<E: ProvideErrorMetadata + std::error::Error, R: HttpStatus>(
    e: &SdkError<E, R>,
) -> String {
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("error");
            let msg = se.err().message().unwrap_or("");
            format!(
                "{code} (HTTP {}){}{msg}",
                se.raw().status_code(),
                if msg.is_empty() { "" } else { ": " }
            )
        }
        SdkError::TimeoutError(_) => "timed out".into(),
        SdkError::DispatchFailure(d) => {
            if d.is_io() {
                "connection failed (is the endpoint reachable?)".into()
            } else if d.is_timeout() {
                "connection timed out".into()
            } else {
                "request could not be sent".into()
            }
        }
        SdkError::ResponseError(_) => "unreadable response".into(),
        SdkError::ConstructionFailure(_) => "request could not be built".into(),
        _ => "unknown S3 error".into(),
    }
}

pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}
