//! Ingress errors and the one function that maps them to HTTP answers (SPEC §2.2).

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::Full;
use hyper::Response;

use crate::{credentials, kafka, platforms, providers};

/// Why a webhook was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    /// The route answers only these methods.
    #[error("method not allowed")]
    MethodNotAllowed(&'static [http::Method]),
    #[error("unknown provider")]
    UnknownProvider,
    #[error("maintenance mode: try again later")]
    Maintenance,
    #[error("overloaded: try again later")]
    Overloaded,
    #[error("body larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("body not received within the read timeout")]
    BodyTimeout,
    #[error("cannot read the request body")]
    BodyRead(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("no tenant clue in the delivery; use /api/webhooks/{{provider}}/{{integration_key}}")]
    MissingClue,
    #[error(transparent)]
    Provider(#[from] providers::Error),
    /// A body of a platform whose payloads carry secrets, where they are (or which value is
    /// the secret) cannot be told: refused rather than produced with a secret in it.
    #[error(transparent)]
    Secrets(#[from] credentials::Refused),
    #[error("rate limit exceeded")]
    RateLimited { retry_after_seconds: u64 },
    /// Known, but not allowed from where it comes (a storefront signal's origin).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{}", kafka_message(.0))]
    Kafka(#[source] kafka::Error),
    /// An OAuth connect step that did not connect.
    #[error(transparent)]
    Connect(#[from] platforms::Failure),
    /// A bug: the cause is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

fn kafka_message(error: &kafka::Error) -> &'static str {
    match error {
        kafka::Error::AckTimeout => "Kafka did not acknowledge in time: try again",
        kafka::Error::TooLarge => "body larger than the Kafka topic accepts",
        _ => "Kafka is unavailable: try again later",
    }
}

/// Who is to blame, which decides how loudly it is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The request was wrong; retrying it unchanged will fail again.
    Client,
    /// We could not take it now; the platform's retry will succeed later.
    Retryable,
    /// Our fault: logged as an error with its cause.
    Internal,
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound | Error::UnknownProvider => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Maintenance | Error::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::BodyRead(_) | Error::MissingClue => StatusCode::BAD_REQUEST,
            Error::Provider(providers::Error::Malformed(_)) => StatusCode::BAD_REQUEST,
            Error::Secrets(_) => StatusCode::BAD_REQUEST,
            Error::Provider(providers::Error::Unauthorized(_)) => StatusCode::UNAUTHORIZED,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Kafka(kafka::Error::AckTimeout) => StatusCode::GATEWAY_TIMEOUT,
            Error::Kafka(kafka::Error::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Kafka(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Connect(failure) => match failure {
                platforms::Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
                platforms::Failure::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                platforms::Failure::Forbidden(_) => StatusCode::FORBIDDEN,
                platforms::Failure::NotFound(_) => StatusCode::NOT_FOUND,
                platforms::Failure::Conflict(_) => StatusCode::CONFLICT,
                platforms::Failure::Platform(_) => StatusCode::BAD_GATEWAY,
                platforms::Failure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// What went wrong, for the log: the internal cause where there is one.
    pub fn cause(&self) -> &str {
        match self {
            Error::Internal(cause) => cause,
            _ => "",
        }
    }

    pub fn class(&self) -> Class {
        match self {
            Error::Maintenance
            | Error::Overloaded
            | Error::BodyTimeout
            | Error::RateLimited { .. }
            | Error::Kafka(
                kafka::Error::QueueFull
                | kafka::Error::Unreachable
                | kafka::Error::AckTimeout
                | kafka::Error::Delivery(_)
                | kafka::Error::Client(_)
                | kafka::Error::CreateTopic { .. }
                | kafka::Error::Timeout(_)
                | kafka::Error::Refused(_),
            ) => Class::Retryable,
            Error::Internal(_) => Class::Internal,
            _ => Class::Client,
        }
    }

    /// The answer: JSON `{"error": …}`, with `Retry-After` where a retry is expected.
    pub fn into_response(self, retry_after_seconds: u64) -> Response<Full<Bytes>> {
        let status = self.status();
        let retry_after = match &self {
            Error::RateLimited {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(retry_after_seconds),
            _ => None,
        };
        let allow = match &self {
            Error::MethodNotAllowed(methods) => Some(
                methods
                    .iter()
                    .map(http::Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            _ => None,
        };
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(seconds) = retry_after {
            response = response.header(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(methods) = allow {
            response = response.header(header::ALLOW, methods);
        }
        response
            .body(Full::new(Bytes::from(body)))
            .expect("response parts are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_spec() {
        let cases = [
            (Error::UnknownProvider, 404),
            (Error::Maintenance, 503),
            (Error::Overloaded, 503),
            (Error::BodyTooLarge { limit: 1 }, 413),
            (Error::MissingClue, 400),
            (Error::Provider(providers::Error::Malformed("x")), 400),
            (Error::Secrets(credentials::Refused::Unreadable), 400),
            (
                Error::Secrets(credentials::Refused::Repeated("access_token")),
                400,
            ),
            (Error::Provider(providers::Error::Unauthorized("x")), 401),
            (
                Error::RateLimited {
                    retry_after_seconds: 3,
                },
                429,
            ),
            (Error::Forbidden("x"), 403),
            (Error::Kafka(kafka::Error::AckTimeout), 504),
            (Error::Kafka(kafka::Error::QueueFull), 503),
            (Error::Kafka(kafka::Error::TooLarge), 413),
            (Error::Kafka(kafka::Error::Unreachable), 503),
            (Error::Internal("a bug".to_string()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
    }

    #[test]
    fn internal_errors_answer_500_without_their_cause() {
        let response = Error::Internal("secret detail".to_string()).into_response(7);
        assert_eq!(response.status(), 500);
        let body = format!("{:?}", response.body());
        assert!(body.contains("internal error"), "{body}");
        assert!(!body.contains("secret detail"), "{body}");
    }

    #[test]
    fn a_405_names_the_methods_the_route_answers() {
        let response =
            Error::MethodNotAllowed(&[http::Method::GET, http::Method::HEAD]).into_response(7);
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
    }

    #[test]
    fn retryable_answers_say_when_to_retry() {
        let response = Error::Maintenance.into_response(7);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let response = Error::RateLimited {
            retry_after_seconds: 2,
        }
        .into_response(7);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = Error::Provider(providers::Error::Unauthorized("x")).into_response(7);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
