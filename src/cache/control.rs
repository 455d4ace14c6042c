//! What a request may ask of the cache through its own headers. The gateway strips every
//! `X-Rubberduck-*` header before the upstream sees the request.

use actix_web::http::header::HeaderMap;

use crate::spec::CacheMode;

/// Records and replays under a name of its own (a test's), apart from other cassettes.
pub const CASSETTE_HEADER: &str = "x-rubberduck-cassette";
/// `bypass`, `refresh` or `replay-only`, for this request alone.
pub const CACHE_HEADER: &str = "x-rubberduck-cache";

const MAX_CASSETTE_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Neither looked up nor stored.
    Bypass,
    Refresh,
    ReplayOnly,
}

/// What the cache does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Bypass,
    Mode(CacheMode),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestControl {
    pub cassette: Option<String>,
    pub directive: Option<Directive>,
}

impl RequestControl {
    /// Reads the headers; `Err` says what is wrong with them, for the client.
    pub fn of(headers: &HeaderMap) -> Result<Self, String> {
        let text = |name: &str| -> Result<Option<String>, String> {
            match headers.get(name) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .map(|v| Some(v.trim().to_owned()))
                    .map_err(|_| format!("{name} must be visible ASCII text")),
            }
        };
        let cassette = text(CASSETTE_HEADER)?;
        if let Some(name) = &cassette {
            if name.is_empty() {
                return Err(format!("{CASSETTE_HEADER} is empty; name the cassette"));
            }
            if name.chars().count() > MAX_CASSETTE_CHARS {
                return Err(format!(
                    "{CASSETTE_HEADER} is longer than {MAX_CASSETTE_CHARS} characters"
                ));
            }
        }
        let directive = match text(CACHE_HEADER)?.as_deref() {
            None => None,
            Some("bypass") => Some(Directive::Bypass),
            Some("refresh") => Some(Directive::Refresh),
            Some("replay-only") => Some(Directive::ReplayOnly),
            Some(other) => {
                return Err(format!(
                    "{CACHE_HEADER}: “{other}” is not one of bypass, refresh and replay-only"
                ));
            }
        };
        Ok(RequestControl {
            cassette,
            directive,
        })
    }

    /// The handling of this request by a proxy caching in `mode`. A replay-only proxy never
    /// reaches its upstream, so a request asking to is refused (`Err`, for the client).
    pub fn handling(&self, mode: CacheMode) -> Result<Handling, String> {
        match (self.directive, mode) {
            (None, mode) => Ok(Handling::Mode(mode)),
            (Some(Directive::ReplayOnly), _) => Ok(Handling::Mode(CacheMode::ReplayOnly)),
            (Some(asked), CacheMode::ReplayOnly) => Err(format!(
                "{CACHE_HEADER}: {} would reach the upstream, and this proxy replays only",
                if asked == Directive::Bypass {
                    "bypass"
                } else {
                    "refresh"
                }
            )),
            (Some(Directive::Bypass), _) => Ok(Handling::Bypass),
            (Some(Directive::Refresh), _) => Ok(Handling::Mode(CacheMode::Refresh)),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn control(pairs: &[(&'static str, &'static str)]) -> Result<RequestControl, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        RequestControl::of(&headers)
    }

    #[test]
    fn headers_pick_the_cassette_and_the_handling() {
        let asked =
            control(&[(CASSETTE_HEADER, " test_a "), (CACHE_HEADER, "refresh")]).expect("valid");
        assert_eq!(asked.cassette.as_deref(), Some("test_a"));
        assert_eq!(
            asked.handling(CacheMode::ReadWrite),
            Ok(Handling::Mode(CacheMode::Refresh))
        );
        assert!(asked.handling(CacheMode::ReplayOnly).is_err());
        let plain = control(&[]).expect("valid");
        assert_eq!(
            plain.handling(CacheMode::Refresh),
            Ok(Handling::Mode(CacheMode::Refresh))
        );
        let bypass = control(&[(CACHE_HEADER, "bypass")]).expect("valid");
        assert_eq!(bypass.handling(CacheMode::ReadWrite), Ok(Handling::Bypass));
        let replay = control(&[(CACHE_HEADER, "replay-only")]).expect("valid");
        assert_eq!(
            replay.handling(CacheMode::ReadWrite),
            Ok(Handling::Mode(CacheMode::ReplayOnly))
        );
        assert!(control(&[(CACHE_HEADER, "sometimes")]).is_err());
        assert!(control(&[(CASSETTE_HEADER, "")]).is_err());
    }
}
