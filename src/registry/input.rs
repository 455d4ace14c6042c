//! What a user submits to create or edit a proxy (from the API or a form), and its validation.
//! Checks that need the registry's state (ports taken by other proxies) live in the registry.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use actix_web::http::Uri;
use serde_json::Value;

use crate::emulator::{self, EmulatorSettings};
use crate::providers::ProviderKind;
use crate::spec::{CacheMode, CacheSettings, ProxySpec, ValidProxy};
use crate::validation::FieldError;

const MAX_NAME_CHARS: usize = 80;
const MAX_DESCRIPTION_CHARS: usize = 500;
const MAX_TAGS: usize = 10;
const MAX_TAG_CHARS: usize = 32;

/// A port as typed: forms send text, JSON clients send numbers.
#[derive(Debug, Clone)]
pub enum PortInput {
    Number(i64),
    Text(String),
}

/// Tags as a JSON list or as the comma-separated text of a form field.
#[derive(Debug, Clone)]
pub enum TagsInput {
    List(Vec<String>),
    Text(String),
}

#[derive(Debug, Clone, Default)]
pub struct CacheInput {
    pub enabled: Option<bool>,
    pub mode: Option<String>,
    pub ttl_seconds: Option<i64>,
    pub partition_by_credential: Option<bool>,
    /// Whether `ttl_seconds` was given, so that an explicit null (keep forever) is an edit.
    pub ttl_explicit: bool,
    /// `Some(None)`: an explicit null, which unbinds the directory.
    pub fixtures_dir: Option<Option<String>>,
    pub ignore_fields: Option<Vec<String>>,
    /// `instant`, `recorded` or a speed factor, as text.
    pub stream_replay: Option<String>,
}

impl CacheInput {
    /// The complete input that reproduces `settings`.
    fn of(settings: &CacheSettings) -> Self {
        CacheInput {
            enabled: Some(settings.enabled),
            mode: Some(settings.mode.as_str().to_owned()),
            ttl_seconds: settings.ttl_seconds.and_then(|t| i64::try_from(t).ok()),
            partition_by_credential: Some(settings.partition_by_credential),
            ttl_explicit: true,
            fixtures_dir: Some(
                settings
                    .fixtures_dir
                    .as_ref()
                    .map(|dir| dir.to_string_lossy().into_owned()),
            ),
            ignore_fields: Some(settings.ignore_fields.clone()),
            stream_replay: Some(settings.stream_replay.as_text()),
        }
    }
}

/// The emulator's latency as typed; absent fields keep their value (or the default).
#[derive(Debug, Clone, Default)]
pub struct EmulatorInput {
    pub ttft_ms: Option<i64>,
    pub tokens_per_second: Option<i64>,
}

/// Fields absent from a PATCH keep their value; an empty string clears an optional text field.
#[derive(Debug, Clone, Default)]
pub struct ProxyInput {
    pub name: Option<String>,
    pub provider: Option<String>,
    pub port: Option<PortInput>,
    pub description: Option<String>,
    pub tags: Option<TagsInput>,
    pub upstream_url: Option<String>,
    pub vertex_service_account_file: Option<String>,
    pub aws_region: Option<String>,
    pub cache: Option<CacheInput>,
    pub emulator: Option<EmulatorInput>,
    pub log_requests: Option<bool>,
    /// `Some(None)`: an explicit null, which removes the cap.
    pub daily_spend_cap_usd: Option<Option<f64>>,
}

impl ProxyInput {
    /// Reads an API body field by field, so a wrong type is reported against its field.
    pub fn from_json(body: serde_json::Value) -> Result<Self, FieldError> {
        let serde_json::Value::Object(fields) = body else {
            return Err(FieldError::new("body", "The body must be a JSON object."));
        };
        let mut input = ProxyInput::default();
        for (key, value) in fields {
            match key.as_str() {
                "name" => input.name = json_text("name", value)?,
                "provider" => input.provider = json_text("provider", value)?,
                "description" => input.description = json_text("description", value)?,
                "upstream_url" => input.upstream_url = json_text("upstream_url", value)?,
                "aws_region" => input.aws_region = json_text("aws_region", value)?,
                "vertex_service_account_file" => {
                    input.vertex_service_account_file =
                        json_text("vertex_service_account_file", value)?;
                }
                "port" => {
                    input.port = match value {
                        Value::Null => None,
                        Value::Number(n) => Some(PortInput::Number(n.as_i64().unwrap_or(-1))),
                        Value::String(text) => Some(PortInput::Text(text)),
                        _ => return Err(FieldError::new("port", "Port must be a number or null.")),
                    };
                }
                "tags" => {
                    input.tags = match value {
                        Value::Null => Some(TagsInput::List(Vec::new())),
                        Value::String(text) => Some(TagsInput::Text(text)),
                        Value::Array(items) => Some(TagsInput::List(
                            items
                                .into_iter()
                                .map(|item| match item {
                                    Value::String(tag) => Ok(tag),
                                    _ => Err(FieldError::new("tags", "Tags must be strings.")),
                                })
                                .collect::<Result<_, _>>()?,
                        )),
                        _ => {
                            return Err(FieldError::new("tags", "Tags must be a list of strings."));
                        }
                    };
                }
                "cache" => input.cache = Some(CacheInput::from_json(value)?),
                "daily_spend_cap_usd" => {
                    input.daily_spend_cap_usd = match value {
                        Value::Null => Some(None),
                        Value::Number(n) => Some(Some(n.as_f64().unwrap_or(-1.0))),
                        _ => {
                            return Err(FieldError::new(
                                "daily_spend_cap_usd",
                                "daily_spend_cap_usd must be a number of US dollars, or null for no cap.",
                            ));
                        }
                    };
                }
                "emulator" => input.emulator = Some(EmulatorInput::from_json(value)?),
                "log_requests" => {
                    input.log_requests = match value {
                        Value::Bool(on) => Some(on),
                        _ => {
                            return Err(FieldError::new(
                                "log_requests",
                                "log_requests must be true or false.",
                            ));
                        }
                    };
                }
                _ => {
                    return Err(FieldError::new("body", format!("Unknown field “{key}”.")));
                }
            }
        }
        Ok(input)
    }

    /// The complete input that reproduces `spec`, for overlaying a partial edit on it.
    pub fn from_spec(spec: &ProxySpec) -> Self {
        ProxyInput {
            name: Some(spec.name.clone()),
            provider: Some(spec.provider.id().to_owned()),
            port: Some(PortInput::Number(spec.port.into())),
            description: Some(spec.description.clone()),
            tags: Some(TagsInput::List(spec.tags.clone())),
            upstream_url: spec.upstream_url.clone(),
            vertex_service_account_file: spec.vertex_service_account_file.clone(),
            aws_region: spec.aws_region.clone(),
            cache: Some(CacheInput::of(&spec.cache)),
            emulator: Some(EmulatorInput {
                ttft_ms: Some(spec.emulator.ttft_ms.into()),
                tokens_per_second: Some(spec.emulator.tokens_per_second.into()),
            }),
            log_requests: Some(spec.log_requests),
            daily_spend_cap_usd: Some(spec.daily_spend_cap_usd),
        }
    }

    /// The edit that makes a proxy exactly `valid`: every field is set (absent optional text as
    /// an empty string, which clears it), so nothing of the settings it replaces survives. The
    /// port only when `valid` names one, so an auto-assigned port stays.
    pub fn from_valid(valid: &ValidProxy) -> Self {
        ProxyInput {
            name: Some(valid.name.clone()),
            provider: Some(valid.provider.id().to_owned()),
            port: valid.port.map(|port| PortInput::Number(port.into())),
            description: Some(valid.description.clone()),
            tags: Some(TagsInput::List(valid.tags.clone())),
            upstream_url: Some(valid.upstream_url.clone().unwrap_or_default()),
            vertex_service_account_file: Some(
                valid
                    .vertex_service_account_file
                    .clone()
                    .unwrap_or_default(),
            ),
            aws_region: Some(valid.aws_region.clone().unwrap_or_default()),
            cache: Some(CacheInput::of(&valid.cache)),
            emulator: Some(EmulatorInput {
                ttft_ms: Some(valid.emulator.ttft_ms.into()),
                tokens_per_second: Some(valid.emulator.tokens_per_second.into()),
            }),
            log_requests: Some(valid.log_requests),
            daily_spend_cap_usd: Some(valid.daily_spend_cap_usd),
        }
    }

    pub fn overlay(mut self, edit: ProxyInput) -> Self {
        fn take<T>(base: &mut Option<T>, edit: Option<T>) {
            if edit.is_some() {
                *base = edit;
            }
        }
        take(&mut self.name, edit.name);
        take(&mut self.provider, edit.provider);
        take(&mut self.port, edit.port);
        take(&mut self.description, edit.description);
        take(&mut self.tags, edit.tags);
        take(&mut self.upstream_url, edit.upstream_url);
        take(
            &mut self.vertex_service_account_file,
            edit.vertex_service_account_file,
        );
        take(&mut self.aws_region, edit.aws_region);
        take(&mut self.log_requests, edit.log_requests);
        take(&mut self.daily_spend_cap_usd, edit.daily_spend_cap_usd);
        if let Some(cache_edit) = edit.cache {
            let cache = self.cache.get_or_insert_with(CacheInput::default);
            take(&mut cache.enabled, cache_edit.enabled);
            take(&mut cache.mode, cache_edit.mode);
            take(
                &mut cache.partition_by_credential,
                cache_edit.partition_by_credential,
            );
            if cache_edit.ttl_explicit {
                cache.ttl_seconds = cache_edit.ttl_seconds;
            }
            take(&mut cache.fixtures_dir, cache_edit.fixtures_dir);
            take(&mut cache.ignore_fields, cache_edit.ignore_fields);
            take(&mut cache.stream_replay, cache_edit.stream_replay);
        }
        if let Some(emulator_edit) = edit.emulator {
            let emulator = self.emulator.get_or_insert_with(EmulatorInput::default);
            take(&mut emulator.ttft_ms, emulator_edit.ttft_ms);
            take(
                &mut emulator.tokens_per_second,
                emulator_edit.tokens_per_second,
            );
        }
        self
    }
}

impl EmulatorInput {
    fn from_json(value: Value) -> Result<Self, FieldError> {
        let Value::Object(fields) = value else {
            return Err(FieldError::new(
                "emulator",
                "emulator must be an object with ttft_ms and tokens_per_second.",
            ));
        };
        let mut emulator = EmulatorInput::default();
        for (key, value) in fields {
            // Fractions and wrong types become -1, which validation reports against the field.
            let number = value.as_i64().or_else(|| value.is_number().then_some(-1));
            match (key.as_str(), number) {
                ("ttft_ms", Some(n)) => emulator.ttft_ms = Some(n),
                ("tokens_per_second", Some(n)) => emulator.tokens_per_second = Some(n),
                ("ttft_ms", None) => {
                    return Err(FieldError::new(
                        "emulator.ttft_ms",
                        "emulator.ttft_ms must be a number of milliseconds.",
                    ));
                }
                ("tokens_per_second", None) => {
                    return Err(FieldError::new(
                        "emulator.tokens_per_second",
                        "emulator.tokens_per_second must be a number.",
                    ));
                }
                (other, _) => {
                    return Err(FieldError::new(
                        "emulator",
                        format!("Unknown emulator field “{other}”."),
                    ));
                }
            }
        }
        Ok(emulator)
    }
}

impl CacheInput {
    fn from_json(value: Value) -> Result<Self, FieldError> {
        let Value::Object(fields) = value else {
            return Err(FieldError::new(
                "cache",
                "cache must be an object with enabled, mode, ttl_seconds, partition_by_credential and fixtures_dir.",
            ));
        };
        let mut cache = CacheInput::default();
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("enabled", Value::Bool(enabled)) => cache.enabled = Some(enabled),
                ("enabled", _) => {
                    return Err(FieldError::new(
                        "cache.enabled",
                        "cache.enabled must be true or false.",
                    ));
                }
                ("mode", Value::String(mode)) => cache.mode = Some(mode),
                ("mode", _) => {
                    return Err(FieldError::new(
                        "cache.mode",
                        "cache.mode must be read_write, replay_only or refresh.",
                    ));
                }
                ("partition_by_credential", Value::Bool(partition)) => {
                    cache.partition_by_credential = Some(partition);
                }
                ("partition_by_credential", _) => {
                    return Err(FieldError::new(
                        "cache.partition_by_credential",
                        "cache.partition_by_credential must be true or false.",
                    ));
                }
                ("ttl_seconds", Value::Null) => {
                    cache.ttl_seconds = None;
                    cache.ttl_explicit = true;
                }
                ("ttl_seconds", Value::Number(n)) => {
                    cache.ttl_seconds = Some(n.as_i64().unwrap_or(-1));
                    cache.ttl_explicit = true;
                }
                ("fixtures_dir", Value::Null) => cache.fixtures_dir = Some(None),
                ("fixtures_dir", Value::String(dir)) => cache.fixtures_dir = Some(Some(dir)),
                ("fixtures_dir", _) => {
                    return Err(FieldError::new(
                        "cache.fixtures_dir",
                        "cache.fixtures_dir must be a directory path on the server, or null.",
                    ));
                }
                ("ignore_fields", Value::Array(items)) => {
                    cache.ignore_fields = Some(
                        items
                            .into_iter()
                            .map(|item| match item {
                                Value::String(path) => Ok(path),
                                _ => Err(FieldError::new(
                                    "cache.ignore_fields",
                                    "cache.ignore_fields must be a list of dotted JSON paths.",
                                )),
                            })
                            .collect::<Result<_, _>>()?,
                    );
                }
                ("ignore_fields", Value::Null) => cache.ignore_fields = Some(Vec::new()),
                ("ignore_fields", _) => {
                    return Err(FieldError::new(
                        "cache.ignore_fields",
                        "cache.ignore_fields must be a list of dotted JSON paths.",
                    ));
                }
                ("stream_replay", Value::String(replay)) => cache.stream_replay = Some(replay),
                ("stream_replay", Value::Number(factor)) => {
                    cache.stream_replay = Some(factor.to_string());
                }
                ("stream_replay", _) => {
                    return Err(FieldError::new(
                        "cache.stream_replay",
                        "cache.stream_replay must be instant, recorded or a speed factor.",
                    ));
                }
                ("ttl_seconds", _) => {
                    return Err(FieldError::new(
                        "cache.ttl_seconds",
                        "cache.ttl_seconds must be a number of seconds or null.",
                    ));
                }
                (other, _) => {
                    return Err(FieldError::new(
                        "cache",
                        format!("Unknown cache field “{other}”."),
                    ));
                }
            }
        }
        Ok(cache)
    }
}

fn json_text(field: &'static str, value: Value) -> Result<Option<String>, FieldError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text)),
        _ => Err(FieldError::new(field, format!("{field} must be a string."))),
    }
}

/// Checks every field and reports every problem, so a form can show them all at once.
pub fn validate(
    input: &ProxyInput,
    port_range: &RangeInclusive<u16>,
) -> Result<ValidProxy, Vec<FieldError>> {
    let mut errors = Vec::new();

    let name = non_empty(input.name.as_deref());
    if name.is_empty() {
        errors.push(FieldError::new("name", "Proxy name is required."));
    } else if name.chars().count() > MAX_NAME_CHARS {
        errors.push(FieldError::new(
            "name",
            format!("Proxy name can be at most {MAX_NAME_CHARS} characters."),
        ));
    } else if name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "name",
            "Proxy name cannot contain control characters.",
        ));
    }

    let provider = match non_empty(input.provider.as_deref()) {
        "" => {
            errors.push(FieldError::new("provider", "Choose a provider."));
            None
        }
        text => match text.parse::<ProviderKind>() {
            Ok(kind) => Some(kind),
            Err(e) => {
                errors.push(FieldError::new("provider", capitalize(&e.to_string())));
                None
            }
        },
    };

    let port = match validate_port(input.port.as_ref(), port_range) {
        Ok(port) => port,
        Err(e) => {
            errors.push(e);
            None
        }
    };

    let description = non_empty(input.description.as_deref()).to_owned();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        errors.push(FieldError::new(
            "description",
            format!("Description can be at most {MAX_DESCRIPTION_CHARS} characters."),
        ));
    }

    let tags = match validate_tags(input.tags.as_ref()) {
        Ok(tags) => tags,
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    };

    let upstream_url = match validate_upstream(input.upstream_url.as_deref()) {
        Ok(url) => url,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    if let Some(why) = provider.and_then(|p| p.provider().upstream_url_required())
        && upstream_url.is_none()
    {
        errors.push(FieldError::new("upstream_url", why));
    }

    let vertex_service_account_file =
        optional_text(input.vertex_service_account_file.as_deref()).map(str::to_owned);
    if let Some(path) = &vertex_service_account_file {
        if provider.is_some_and(|p| !p.provider().takes_key_file()) {
            errors.push(FieldError::new(
                "vertex_service_account_file",
                "Only Google Vertex AI proxies use a service-account key file.",
            ));
        } else if !Path::new(path).is_file() {
            errors.push(FieldError::new(
                "vertex_service_account_file",
                format!("There is no file at {path} on the server."),
            ));
        }
    }

    let aws_region = optional_text(input.aws_region.as_deref()).map(str::to_owned);
    if let Some(region) = &aws_region {
        let well_formed = region.len() <= 32
            && region.contains('-')
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !well_formed {
            errors.push(FieldError::new(
                "aws_region",
                format!("“{region}” is not an AWS region name such as us-east-1."),
            ));
        }
    }

    let cache = match validate_cache(input.cache.as_ref()) {
        Ok(cache) => cache,
        Err(e) => {
            errors.push(e);
            CacheSettings::default()
        }
    };

    let emulator = validate_emulator(input.emulator.as_ref()).unwrap_or_else(|e| {
        errors.extend(e);
        EmulatorSettings::default()
    });

    let daily_spend_cap_usd = input.daily_spend_cap_usd.flatten();
    if daily_spend_cap_usd.is_some_and(|cap| !(0.0..=1_000_000.0).contains(&cap)) {
        errors.push(FieldError::new(
            "daily_spend_cap_usd",
            "The daily spend cap must be between 0 and 1,000,000 US dollars, or empty for no cap.",
        ));
    }

    match provider {
        Some(provider) if errors.is_empty() => Ok(ValidProxy {
            name: name.to_owned(),
            provider,
            port,
            description,
            tags,
            upstream_url,
            vertex_service_account_file,
            aws_region,
            cache,
            emulator,
            log_requests: input.log_requests.unwrap_or(true),
            daily_spend_cap_usd,
        }),
        _ => Err(errors),
    }
}

fn non_empty(text: Option<&str>) -> &str {
    text.map(str::trim).unwrap_or("")
}

fn optional_text(text: Option<&str>) -> Option<&str> {
    Some(non_empty(text)).filter(|t| !t.is_empty())
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn validate_port(
    port: Option<&PortInput>,
    range: &RangeInclusive<u16>,
) -> Result<Option<u16>, FieldError> {
    let out_of_range = || {
        FieldError::new(
            "port",
            format!(
                "Port must be a whole number from {} to {}, or empty to auto-assign.",
                range.start(),
                range.end()
            ),
        )
    };
    let number = match port {
        None => return Ok(None),
        Some(PortInput::Number(n)) => *n,
        Some(PortInput::Text(text)) if text.trim().is_empty() => return Ok(None),
        Some(PortInput::Text(text)) => text.trim().parse::<i64>().map_err(|_| out_of_range())?,
    };
    u16::try_from(number)
        .ok()
        .filter(|p| range.contains(p))
        .map(Some)
        .ok_or_else(out_of_range)
}

fn validate_tags(tags: Option<&TagsInput>) -> Result<Vec<String>, FieldError> {
    let raw: Vec<&str> = match tags {
        None => Vec::new(),
        Some(TagsInput::List(list)) => list.iter().map(String::as_str).collect(),
        Some(TagsInput::Text(text)) => text.split(',').collect(),
    };
    let mut tags: Vec<String> = Vec::new();
    for tag in raw.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        if tag.chars().count() > MAX_TAG_CHARS || tag.chars().any(char::is_control) {
            return Err(FieldError::new(
                "tags",
                format!(
                    "Tag “{tag}” is too long or has control characters (at most {MAX_TAG_CHARS} characters)."
                ),
            ));
        }
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(FieldError::new(
            "tags",
            format!("At most {MAX_TAGS} tags per proxy."),
        ));
    }
    Ok(tags)
}

fn validate_upstream(url: Option<&str>) -> Result<Option<String>, FieldError> {
    let Some(url) = optional_text(url) else {
        return Ok(None);
    };
    if url.eq_ignore_ascii_case(emulator::UPSTREAM) {
        return Ok(Some(emulator::UPSTREAM.to_owned()));
    }
    let invalid = || {
        FieldError::new(
            "upstream_url",
            format!("“{url}” is not an http:// or https:// URL, or “emulator”."),
        )
    };
    let uri: Uri = url.parse().map_err(|_| invalid())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    if uri.query().is_some() {
        return Err(FieldError::new(
            "upstream_url",
            "The upstream URL cannot have a query string.",
        ));
    }
    Ok(Some(url.trim_end_matches('/').to_owned()))
}

fn validate_emulator(input: Option<&EmulatorInput>) -> Result<EmulatorSettings, Vec<FieldError>> {
    let defaults = EmulatorSettings::default();
    let Some(input) = input else {
        return Ok(defaults);
    };
    let mut errors = Vec::new();
    let ttft_ms = match input.ttft_ms {
        None => defaults.ttft_ms,
        Some(ms) => u32::try_from(ms)
            .ok()
            .filter(|ms| *ms <= EmulatorSettings::MAX_TTFT_MS)
            .unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "emulator.ttft_ms",
                    format!(
                        "Time to first token must be a whole number of milliseconds from 0 to {}.",
                        EmulatorSettings::MAX_TTFT_MS
                    ),
                ));
                defaults.ttft_ms
            }),
    };
    let tokens_per_second = match input.tokens_per_second {
        None => defaults.tokens_per_second,
        Some(tps) => u32::try_from(tps)
            .ok()
            .filter(|tps| (1..=EmulatorSettings::MAX_TOKENS_PER_SECOND).contains(tps))
            .unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "emulator.tokens_per_second",
                    format!(
                        "Tokens per second must be a whole number from 1 to {}.",
                        EmulatorSettings::MAX_TOKENS_PER_SECOND
                    ),
                ));
                defaults.tokens_per_second
            }),
    };
    if errors.is_empty() {
        Ok(EmulatorSettings {
            ttft_ms,
            tokens_per_second,
        })
    } else {
        Err(errors)
    }
}

fn validate_cache(cache: Option<&CacheInput>) -> Result<CacheSettings, FieldError> {
    let defaults = CacheSettings::default();
    let Some(cache) = cache else {
        return Ok(defaults);
    };
    let mode = match cache.mode.as_deref() {
        None => defaults.mode,
        Some(mode) => mode
            .parse::<CacheMode>()
            .map_err(|e| FieldError::new("cache.mode", capitalize(&e)))?,
    };
    let ttl_seconds = match cache.ttl_seconds {
        None => None,
        Some(ttl) if ttl > 0 => Some(ttl.unsigned_abs()),
        Some(_) => {
            return Err(FieldError::new(
                "cache.ttl_seconds",
                "Cache TTL must be a positive number of seconds, or null to keep entries forever.",
            ));
        }
    };
    let fixtures_dir = match cache
        .fixtures_dir
        .as_ref()
        .and_then(|d| optional_text(d.as_deref()))
    {
        None => None,
        Some(dir) => Some(validate_fixtures_dir(dir, mode)?),
    };
    let ignore_fields = validate_ignore_fields(cache.ignore_fields.as_deref().unwrap_or_default())?;
    let stream_replay = match cache.stream_replay.as_deref() {
        None => defaults.stream_replay,
        Some(replay) => replay
            .parse()
            .map_err(|e: String| FieldError::new("cache.stream_replay", capitalize(&e)))?,
    };
    Ok(CacheSettings {
        enabled: cache.enabled.unwrap_or(defaults.enabled),
        mode,
        ttl_seconds,
        partition_by_credential: cache
            .partition_by_credential
            .unwrap_or(defaults.partition_by_credential),
        fixtures_dir,
        ignore_fields,
        stream_replay,
    })
}

const MAX_IGNORED_FIELDS: usize = 32;

/// Dotted paths of JSON object keys (`metadata.run_id`; a number picks a list item:
/// `messages.0.content`); duplicates are dropped.
fn validate_ignore_fields(paths: &[String]) -> Result<Vec<String>, FieldError> {
    let field = "cache.ignore_fields";
    if paths.len() > MAX_IGNORED_FIELDS {
        return Err(FieldError::new(
            field,
            format!("At most {MAX_IGNORED_FIELDS} fields can be left out of the cache key."),
        ));
    }
    let mut valid: Vec<String> = Vec::new();
    for path in paths {
        let path = path.trim();
        let well_formed = !path.is_empty()
            && path.len() <= 200
            && path.split('.').all(|segment| {
                !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
            });
        if !well_formed {
            return Err(FieldError::new(
                field,
                format!("“{path}” is not a dotted JSON path such as user or metadata.run_id."),
            ));
        }
        if !valid.iter().any(|known| known == path) {
            valid.push(path.to_owned());
        }
    }
    Ok(valid)
}

/// A fixtures directory must be named absolutely (a server's working directory is no place to
/// guess from); one that does not exist yet is made when the proxy records, but replaying
/// needs it to be there.
fn validate_fixtures_dir(dir: &str, mode: CacheMode) -> Result<PathBuf, FieldError> {
    let path = PathBuf::from(dir);
    let field = "cache.fixtures_dir";
    if !path.is_absolute() {
        return Err(FieldError::new(
            field,
            format!(
                "The fixtures directory must be an absolute path on the server; “{dir}” is relative."
            ),
        ));
    }
    if path.exists() && !path.is_dir() {
        return Err(FieldError::new(
            field,
            format!("{dir} on the server is a file, not a directory."),
        ));
    }
    if !path.exists() && mode == CacheMode::ReplayOnly {
        return Err(FieldError::new(
            field,
            format!("There is no directory {dir} on the server to replay fixtures from."),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: RangeInclusive<u16> = 8001..=9999;

    fn input(name: &str, provider: &str) -> ProxyInput {
        ProxyInput {
            name: Some(name.into()),
            provider: Some(provider.into()),
            ..ProxyInput::default()
        }
    }

    fn fields(result: Result<ValidProxy, Vec<FieldError>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field.into_owned())
            .collect()
    }

    #[test]
    fn reports_every_bad_field() {
        let bad = ProxyInput {
            port: Some(PortInput::Number(8000)),
            ..ProxyInput::default()
        };
        assert_eq!(fields(validate(&bad, &RANGE)), ["name", "provider", "port"]);
    }

    #[test]
    fn ports_accept_numbers_text_and_empty() {
        let mut ok = input("a", "openai");
        ok.port = Some(PortInput::Text(" 8123 ".into()));
        assert_eq!(validate(&ok, &RANGE).map(|v| v.port).ok(), Some(Some(8123)));
        ok.port = Some(PortInput::Text(String::new()));
        assert_eq!(validate(&ok, &RANGE).map(|v| v.port).ok(), Some(None));
        for bad in [
            PortInput::Number(10_000),
            PortInput::Number(-1),
            PortInput::Text("80a".into()),
        ] {
            ok.port = Some(bad);
            assert_eq!(fields(validate(&ok, &RANGE)), ["port"]);
        }
    }

    #[test]
    fn azure_needs_an_endpoint() {
        assert_eq!(
            fields(validate(&input("a", "azure_openai"), &RANGE)),
            ["upstream_url"]
        );
        let mut with_endpoint = input("a", "azure_openai");
        with_endpoint.upstream_url = Some("https://r.openai.azure.com/".into());
        let valid = validate(&with_endpoint, &RANGE).ok();
        assert_eq!(
            valid.and_then(|v| v.upstream_url).as_deref(),
            Some("https://r.openai.azure.com")
        );
    }

    #[test]
    fn tags_from_text_are_trimmed_and_deduplicated() {
        let mut tagged = input("a", "openai");
        tagged.tags = Some(TagsInput::Text(" ci, prod ,ci,, ".into()));
        assert_eq!(
            validate(&tagged, &RANGE).map(|v| v.tags).ok(),
            Some(vec!["ci".to_owned(), "prod".to_owned()])
        );
    }

    #[test]
    fn the_emulator_is_an_upstream_with_checked_latency() {
        let mut azure = input("a", "azure_openai");
        azure.upstream_url = Some(" Emulator ".into());
        let valid = validate(&azure, &RANGE).ok();
        assert_eq!(
            valid.and_then(|v| v.upstream_url).as_deref(),
            Some("emulator"),
            "satisfies Azure's need for an endpoint"
        );
        azure.emulator = Some(EmulatorInput {
            ttft_ms: Some(-1),
            tokens_per_second: Some(0),
        });
        assert_eq!(
            fields(validate(&azure, &RANGE)),
            ["emulator.ttft_ms", "emulator.tokens_per_second"]
        );
    }

    #[test]
    fn upstream_must_be_http() {
        let mut proxy = input("a", "openai");
        for bad in ["ftp://x", "not a url", "http://", "https://x/v1?x=1"] {
            proxy.upstream_url = Some(bad.into());
            assert_eq!(fields(validate(&proxy, &RANGE)), ["upstream_url"], "{bad}");
        }
    }

    #[test]
    fn from_valid_replaces_every_field_and_keeps_an_unnamed_port() {
        let mut declared = input("a", "openai");
        declared.cache = Some(CacheInput {
            mode: Some("refresh".into()),
            ttl_seconds: Some(60),
            ttl_explicit: true,
            ..CacheInput::default()
        });
        let valid = validate(&declared, &RANGE).expect("valid");
        let edit = ProxyInput::from_valid(&valid);
        assert!(edit.port.is_none(), "an auto-assigned port stays");
        assert_eq!(edit.upstream_url.as_deref(), Some(""), "clears an override");
        assert_eq!(edit.description.as_deref(), Some(""));
        let edited = ProxyInput {
            description: Some("edited".into()),
            upstream_url: Some("http://mock".into()),
            log_requests: Some(false),
            ..input("a", "openai")
        }
        .overlay(edit);
        let again = validate(&edited, &RANGE).expect("valid");
        assert_eq!(again.description, "");
        assert_eq!(again.upstream_url, None);
        assert!(again.log_requests);
        assert_eq!(again.cache, valid.cache);
    }
}
