//! The config file of `rubberduck serve --config FILE` and `rubberduck check --config FILE`:
//! proxies declared in TOML, one `[[proxy]]` table each, with the fields and the validation of
//! the admin API (`POST /api/proxies` and `PUT /api/proxies/{id}/failure-config`). Every
//! problem is reported with the file, the line and the field.

use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::faults::FailureConfig;
use crate::registry::RegistryError;
use crate::registry::declared::{Declarations, DeclaredProxy};
use crate::registry::input::{
    CacheInput, EmulatorInput, PortInput, ProxyInput, TagsInput, validate,
};
use crate::validation::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the config file: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// Every problem found, each on its own line.
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

/// One problem, where it is: `rubberduck.toml:7: proxy “chat”: cache.mode: unknown cache mode…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as it was named.
    pub file: String,
    pub line: Option<usize>,
    /// `proxy “chat”`, or `proxy #2` for one without a name.
    pub proxy: Option<String>,
    /// The key inside its `[[proxy]]` table, dotted (`cache.mode`, `failures.timeout.rate`).
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        for part in [&self.proxy, &self.field].into_iter().flatten() {
            write!(f, ": {part}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A config file that passed every check that needs no running registry.
#[derive(Debug)]
pub struct ConfigFile {
    /// The file as it was named, for messages.
    pub shown: String,
    pub declarations: Declarations,
    places: Places,
}

impl ConfigFile {
    /// Reads and checks the file. Relative paths in it are taken from the file's directory.
    pub fn load(path: &Path, port_range: &RangeInclusive<u16>) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let read_error = |source| ConfigError::Read {
            file: shown.clone(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let absolute = std::fs::canonicalize(path).map_err(read_error)?;
        Self::parse(&shown, &text, absolute, port_range)
    }

    /// Checks the text of the file at `absolute` (named `shown` in messages).
    pub fn parse(
        shown: &str,
        text: &str,
        absolute: PathBuf,
        port_range: &RangeInclusive<u16>,
    ) -> Result<Self, ConfigError> {
        let lines = LineStarts::new(text);
        let problem = |line: Option<usize>, proxy, field, message: &str| Problem {
            file: shown.to_owned(),
            line,
            proxy,
            field,
            message: message.to_owned(),
        };
        let (root, syntax_errors) = DeTable::parse_recoverable(text);
        if !syntax_errors.is_empty() {
            let problems = syntax_errors
                .iter()
                .map(|e| {
                    problem(
                        e.span().map(|s| lines.line(s.start)),
                        None,
                        None,
                        e.message(),
                    )
                })
                .collect();
            return Err(ConfigError::Invalid { problems });
        }
        let places = Places::of(root.get_ref(), &lines);
        let model = FileToml::deserialize(toml::de::Deserializer::from(root)).map_err(|e| {
            let (proxy, field, line) = match e.span() {
                Some(span) => {
                    let (proxy, field) = places.at(span.start);
                    (proxy, field, Some(lines.line(span.start)))
                }
                None => (None, None, None),
            };
            let label = proxy.map(|index| places.label(index));
            ConfigError::Invalid {
                problems: vec![problem(line, label, field, e.message())],
            }
        })?;

        let dir = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut problems = Vec::new();
        let mut proxies = Vec::new();
        let mut identities = Vec::new();
        for (index, mut entry) in model.proxy.into_iter().enumerate() {
            let mut errors = Vec::new();
            let failures = entry.failures.take().map_or_else(
                || Ok(FailureConfig::default()),
                |table| failure_config(table).map_err(|e| under("failures", e)),
            );
            let input = entry.into_input(&dir);
            identities.push(Identity::of(index, &input));
            let valid = validate(&input, port_range).map_err(|e| errors.extend(e));
            let failures = failures.map_err(|e| errors.push(e));
            for error in errors {
                problems.push(places.problem(shown, index, &error));
            }
            if let (Ok(proxy), Ok(failures)) = (valid, failures) {
                proxies.push(DeclaredProxy { proxy, failures });
            }
        }
        problems.extend(duplicates(shown, &identities, &places));
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(ConfigError::Invalid { problems });
        }
        Ok(ConfigFile {
            shown: shown.to_owned(),
            declarations: Declarations {
                file: absolute,
                proxies,
            },
            places,
        })
    }

    /// The error of applying the file to a registry, placed in the file where it can.
    pub fn applying_failed(&self, proxy: Option<usize>, error: &RegistryError) -> ConfigError {
        let problems = match (proxy, error) {
            (Some(index), RegistryError::Invalid(errors)) if !errors.is_empty() => errors
                .iter()
                .map(|e| self.places.problem(&self.shown, index, e))
                .collect(),
            (Some(index), other) => vec![Problem {
                file: self.shown.clone(),
                line: self.places.line_of(index, ""),
                proxy: Some(self.places.label(index)),
                field: None,
                message: other.to_string(),
            }],
            (None, other) => vec![Problem {
                file: self.shown.clone(),
                line: None,
                proxy: None,
                field: None,
                message: other.to_string(),
            }],
        };
        ConfigError::Invalid { problems }
    }
}

/// The whole file. Unknown keys are errors, at every level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    proxy: Vec<ProxyToml>,
}

/// One `[[proxy]]` table: the fields of `POST /api/proxies`, and the failure config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxyToml {
    name: Option<String>,
    provider: Option<String>,
    port: Option<i64>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    /// A URL, or `"emulator"`.
    upstream_url: Option<String>,
    aws_region: Option<String>,
    /// Relative to the file's directory.
    vertex_service_account_file: Option<String>,
    log_requests: Option<bool>,
    daily_spend_cap_usd: Option<f64>,
    cache: Option<CacheToml>,
    emulator: Option<EmulatorToml>,
    /// The body of `PUT /api/proxies/{id}/failure-config`, as TOML.
    failures: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheToml {
    enabled: Option<bool>,
    mode: Option<String>,
    /// Left out: entries are kept forever.
    ttl_seconds: Option<i64>,
    partition_by_credential: Option<bool>,
    /// Relative to the file's directory.
    fixtures_dir: Option<String>,
    ignore_fields: Option<Vec<String>>,
    /// `"instant"`, `"recorded"`, or a speed factor (a number).
    stream_replay: Option<StreamReplayToml>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StreamReplayToml {
    Factor(f64),
    Named(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmulatorToml {
    ttft_ms: Option<i64>,
    tokens_per_second: Option<i64>,
}

impl ProxyToml {
    fn into_input(self, dir: &Path) -> ProxyInput {
        ProxyInput {
            name: self.name,
            provider: self.provider,
            port: self.port.map(PortInput::Number),
            description: self.description,
            tags: self.tags.map(TagsInput::List),
            upstream_url: self.upstream_url,
            vertex_service_account_file: self
                .vertex_service_account_file
                .map(|file| relative_to(dir, &file)),
            aws_region: self.aws_region,
            cache: self.cache.map(|cache| CacheInput {
                enabled: cache.enabled,
                mode: cache.mode,
                ttl_explicit: cache.ttl_seconds.is_some(),
                ttl_seconds: cache.ttl_seconds,
                partition_by_credential: cache.partition_by_credential,
                fixtures_dir: cache.fixtures_dir.map(|d| Some(relative_to(dir, &d))),
                ignore_fields: cache.ignore_fields,
                stream_replay: cache.stream_replay.map(|replay| match replay {
                    StreamReplayToml::Factor(factor) => factor.to_string(),
                    StreamReplayToml::Named(name) => name,
                }),
            }),
            emulator: self.emulator.map(|emulator| EmulatorInput {
                ttft_ms: emulator.ttft_ms,
                tokens_per_second: emulator.tokens_per_second,
            }),
            log_requests: self.log_requests,
            daily_spend_cap_usd: Some(self.daily_spend_cap_usd),
        }
    }
}

/// Read and checked exactly as the body of `PUT /api/proxies/{id}/failure-config`.
fn failure_config(table: toml::Table) -> Result<FailureConfig, FieldError> {
    let json = serde_json::to_value(table)
        .map_err(|e| FieldError::new("body", format!("cannot read the failure config: {e}")))?;
    let config = FailureConfig::from_json(json)?;
    config.validate()?;
    Ok(config)
}

/// The same error, its field inside `table` (a whole-body error is the table's).
fn under(table: &str, error: FieldError) -> FieldError {
    let field = match error.field.as_ref() {
        "body" | "" => table.to_owned(),
        inner => format!("{table}.{inner}"),
    };
    FieldError::owned(field, error.message)
}

/// A path written in the file, absolute: a relative one is taken from the file's directory
/// (and `.` and `..` resolved, so the API shows a plain path). Empty stays empty.
fn relative_to(dir: &Path, path: &str) -> String {
    let trimmed = path.trim();
    if trimmed.is_empty() || Path::new(trimmed).is_absolute() {
        return trimmed.to_owned();
    }
    let mut resolved = PathBuf::new();
    for component in dir.join(trimmed).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            other => resolved.push(other.as_os_str()),
        }
    }
    resolved.to_string_lossy().into_owned()
}

/// A proxy's name and port as the file gives them, to find two proxies with one of them.
struct Identity {
    index: usize,
    name: Option<String>,
    port: Option<i64>,
}

impl Identity {
    fn of(index: usize, input: &ProxyInput) -> Self {
        Identity {
            index,
            name: input
                .name
                .as_deref()
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
            port: match input.port {
                Some(PortInput::Number(port)) => Some(port),
                _ => None,
            },
        }
    }
}

/// Two proxies of one file with one name or one port: the later one is reported.
fn duplicates(shown: &str, proxies: &[Identity], places: &Places) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (later, proxy) in proxies.iter().enumerate() {
        let earlier = &proxies[..later];
        if let Some(name) = &proxy.name
            && let Some(first) = earlier.iter().find(|e| e.name.as_ref() == Some(name))
        {
            let line = places.line_of(first.index, "name").unwrap_or_default();
            let message =
                format!("another proxy of this file, on line {line}, is named “{name}” too");
            problems.push(places.problem(
                shown,
                proxy.index,
                &FieldError::owned("name".into(), message),
            ));
        }
        if let Some(port) = proxy.port
            && let Some(first) = earlier.iter().find(|e| e.port == Some(port))
        {
            let line = places.line_of(first.index, "port").unwrap_or_default();
            let message =
                format!("another proxy of this file, on line {line}, has the port {port} too");
            problems.push(places.problem(
                shown,
                proxy.index,
                &FieldError::owned("port".into(), message),
            ));
        }
    }
    problems
}

/// A validation message as the last part of a `file:line: proxy: field: message` line.
fn clause(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    let mut chars = message.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => first
            .to_lowercase()
            .chain(message.chars().skip(1))
            .collect(),
        _ => message.to_owned(),
    }
}

/// Where each line of the text starts.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        LineStarts(starts)
    }

    /// The line (from 1) of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|start| *start <= offset).max(1)
    }
}

/// A key of the file: its dotted path and its line.
#[derive(Debug, Clone)]
struct Place {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
    line: usize,
}

/// One `[[proxy]]` table's keys.
#[derive(Debug, Default)]
struct ProxyPlaces {
    /// The table's own span (its `[[proxy]]` header).
    span: Range<usize>,
    line: usize,
    name: Option<String>,
    keys: Vec<Place>,
}

/// Where every key of the file is, to name the line of a problem found after parsing.
#[derive(Debug, Default)]
struct Places {
    /// Keys outside the `[[proxy]]` tables (errors, all of them).
    top: Vec<Place>,
    proxies: Vec<ProxyPlaces>,
}

impl Places {
    fn of(root: &DeTable<'_>, lines: &LineStarts) -> Self {
        let mut places = Places::default();
        for (key, value) in root.iter() {
            if key.get_ref().as_ref() != "proxy" {
                collect(key.get_ref(), key, value, lines, &mut places.top);
                continue;
            }
            let DeValue::Array(items) = value.get_ref() else {
                collect("proxy", key, value, lines, &mut places.top);
                continue;
            };
            for item in items.iter() {
                let mut proxy = ProxyPlaces {
                    span: item.span(),
                    line: lines.line(item.span().start),
                    ..ProxyPlaces::default()
                };
                if let DeValue::Table(table) = item.get_ref() {
                    for (key, value) in table.iter() {
                        collect(key.get_ref(), key, value, lines, &mut proxy.keys);
                    }
                    proxy.name = table
                        .get("name")
                        .and_then(|name| match name.get_ref() {
                            DeValue::String(name) => Some(name.trim().to_owned()),
                            _ => None,
                        })
                        .filter(|name| !name.is_empty());
                }
                places.proxies.push(proxy);
            }
        }
        places
    }

    /// `proxy “chat”`, or `proxy #2` for one without a name.
    fn label(&self, index: usize) -> String {
        match self.proxies.get(index).and_then(|p| p.name.as_deref()) {
            Some(name) => format!("proxy “{name}”"),
            None => format!("proxy #{}", index + 1),
        }
    }

    /// The proxy and the key a byte offset of the file falls in.
    fn at(&self, offset: usize) -> (Option<usize>, Option<String>) {
        if let Some(place) = innermost(&self.top, offset) {
            return (None, Some(place.path.clone()));
        }
        let proxy = self
            .proxies
            .iter()
            .position(|p| p.span.contains(&offset))
            .or_else(|| self.proxies.iter().rposition(|p| p.span.start <= offset));
        match proxy {
            Some(index) => (
                Some(index),
                innermost(&self.proxies[index].keys, offset).map(|place| place.path.clone()),
            ),
            None => (None, None),
        }
    }

    /// The line of `field` (`cache.mode`, `failures.script[1].status`) in a proxy's table: of
    /// the key itself, else of the nearest enclosing key the file has, else of the table.
    fn line_of(&self, index: usize, field: &str) -> Option<usize> {
        let proxy = self.proxies.get(index)?;
        let path = field.replace('[', ".").replace(']', "");
        let mut parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
        while !parts.is_empty() {
            let wanted = parts.join(".");
            if let Some(place) = proxy.keys.iter().find(|place| place.path == wanted) {
                return Some(place.line);
            }
            parts.pop();
        }
        Some(proxy.line)
    }

    fn problem(&self, shown: &str, index: usize, error: &FieldError) -> Problem {
        Problem {
            file: shown.to_owned(),
            line: self.line_of(index, &error.field),
            proxy: Some(self.label(index)),
            field: Some(error.field.clone().into_owned()).filter(|f| !f.is_empty()),
            message: clause(&error.message),
        }
    }
}

/// Records `key` and, inside tables and arrays, every key and item below it.
fn collect(
    path: &str,
    key: &toml::Spanned<toml::de::DeString<'_>>,
    value: &toml::Spanned<DeValue<'_>>,
    lines: &LineStarts,
    out: &mut Vec<Place>,
) {
    out.push(Place {
        path: path.to_owned(),
        key: key.span(),
        value: value.span(),
        line: lines.line(key.span().start),
    });
    collect_below(path, value, lines, out);
}

fn collect_below(
    path: &str,
    value: &toml::Spanned<DeValue<'_>>,
    lines: &LineStarts,
    out: &mut Vec<Place>,
) {
    match value.get_ref() {
        DeValue::Table(table) => {
            for (key, value) in table.iter() {
                collect(&format!("{path}.{}", key.get_ref()), key, value, lines, out);
            }
        }
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let item_path = format!("{path}.{index}");
                out.push(Place {
                    path: item_path.clone(),
                    key: item.span(),
                    value: item.span(),
                    line: lines.line(item.span().start),
                });
                collect_below(&item_path, item, lines, out);
            }
        }
        _ => {}
    }
}

/// The deepest key whose name is at `offset`, else the key with the smallest value around it.
fn innermost(places: &[Place], offset: usize) -> Option<&Place> {
    places
        .iter()
        .filter(|place| place.key.contains(&offset))
        .max_by_key(|place| place.path.len())
        .or_else(|| {
            places
                .iter()
                .filter(|place| place.value.contains(&offset))
                .min_by_key(|place| place.value.len())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: RangeInclusive<u16> = 8001..=9999;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse("ci.toml", text, PathBuf::from("/srv/app/ci.toml"), &PORTS)
    }

    /// Every problem of a file that must not parse, as printed.
    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => panic!("the file was accepted"),
            Err(ConfigError::Invalid { problems }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_file_declares_proxies_with_the_api_fields_and_defaults() {
        let file = parse(
            r#"
[[proxy]]
name = " chat "
provider = "openai"
port = 8101
upstream_url = "emulator"
tags = ["ci"]
log_requests = false

[proxy.emulator]
ttft_ms = 0

[proxy.failures.errors]
enabled = true
rates = { "429" = 0.5 }

[[proxy]]
name = "claude"
provider = "anthropic"
cache = { mode = "refresh", ttl_seconds = 60, fixtures_dir = "../fixtures/./claude" }
"#,
        )
        .expect("valid");
        assert_eq!(file.declarations.file, PathBuf::from("/srv/app/ci.toml"));
        let [chat, claude] = &file.declarations.proxies[..] else {
            panic!("two proxies");
        };
        assert_eq!(chat.proxy.name, "chat");
        assert_eq!(chat.proxy.port, Some(8101));
        assert_eq!(chat.proxy.upstream_url.as_deref(), Some("emulator"));
        assert!(!chat.proxy.log_requests);
        assert_eq!(chat.proxy.emulator.ttft_ms, 0);
        assert!(chat.failures.errors.enabled);
        assert_eq!(chat.failures.errors.rates.get("429"), Some(&0.5));
        assert_eq!(claude.proxy.port, None);
        assert_eq!(claude.proxy.cache.ttl_seconds, Some(60));
        assert_eq!(
            claude.proxy.cache.fixtures_dir.as_deref(),
            Some(Path::new("/srv/fixtures/claude")),
            "relative to the file's directory, made plain"
        );
        assert_eq!(claude.failures, FailureConfig::default());
    }

    #[test]
    fn an_empty_file_declares_nothing() {
        let file = parse("# nothing yet\n").expect("valid");
        assert!(file.declarations.proxies.is_empty());
    }

    #[test]
    fn validation_errors_name_the_line_of_their_key() {
        let text = "[[proxy]]\nname = \"chat\"\nprovider = \"openai\"\n\n[proxy.cache]\nenabled = true\nmode = \"replay\"\n";
        assert_eq!(
            problems(text),
            [
                "ci.toml:7: proxy “chat”: cache.mode: unknown cache mode “replay”; expected read_write, replay_only or refresh"
            ]
        );
    }

    #[test]
    fn a_missing_key_is_reported_at_its_table() {
        let text = "[[proxy]]\nname = \"a\"\nprovider = \"openai\"\n\n[[proxy]]\nport = 80\n";
        assert_eq!(
            problems(text),
            [
                "ci.toml:5: proxy #2: name: proxy name is required",
                "ci.toml:5: proxy #2: provider: choose a provider",
                "ci.toml:6: proxy #2: port: port must be a whole number from 8001 to 9999, or empty to auto-assign",
            ]
        );
    }

    #[test]
    fn failure_config_errors_are_placed_under_failures() {
        let text = "[[proxy]]\nname = \"a\"\nprovider = \"openai\"\n[proxy.failures.errors]\nenabled = true\nrates.418 = 0.5\n";
        assert_eq!(
            problems(text),
            [
                "ci.toml:6: proxy “a”: failures.errors.rates.418: 418 is not a status that can be injected; use one of 400, 401, 403, 404, 408, 429, 500, 502, 503, 504, 529"
            ]
        );
        let wrong_type = "[[proxy]]\nname = \"a\"\nprovider = \"openai\"\n[proxy.failures]\ntimeout = { mode = \"sometimes\" }\n";
        let found = problems(wrong_type);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "ci.toml:5: proxy “a”: failures.timeout.mode: unknown variant `sometimes`"
            ),
            "{found:?}"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_their_key() {
        let nested = "[[proxy]]\nname = \"a\"\nprovider = \"openai\"\n\n[proxy.cache]\nmode = \"refresh\"\nttl = 5\n";
        let found = problems(nested);
        assert!(
            found[0].starts_with("ci.toml:7: proxy “a”: cache.ttl: unknown field `ttl`"),
            "{found:?}"
        );
        let top = "title = \"x\"\n";
        assert!(
            problems(top)[0]
                .starts_with("ci.toml:1: title: unknown field `title`, expected `proxy`"),
            "{:?}",
            problems(top)
        );
        let typed = "[[proxy]]\nname = \"a\"\nprovider = \"openai\"\nport = \"8101\"\n";
        assert_eq!(
            problems(typed),
            ["ci.toml:4: proxy “a”: port: invalid type: string \"8101\", expected i64"]
        );
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let found = problems("[[proxy]]\nname = \"a\"\nprovider = = \"openai\"\n");
        assert!(found[0].starts_with("ci.toml:3: "), "{found:?}");
    }

    #[test]
    fn two_proxies_may_not_share_a_name_or_a_port() {
        let text = "[[proxy]]\nname = \"a\"\nprovider = \"openai\"\nport = 8101\n\n[[proxy]]\nname = \"a\"\nprovider = \"openai\"\nport = 8101\n";
        assert_eq!(
            problems(text),
            [
                "ci.toml:7: proxy “a”: name: another proxy of this file, on line 2, is named “a” too",
                "ci.toml:9: proxy “a”: port: another proxy of this file, on line 4, has the port 8101 too",
            ]
        );
    }

    #[test]
    fn errors_of_applying_are_placed_in_the_file() {
        let file =
            parse("[[proxy]]\nname = \"a\"\nprovider = \"openai\"\nport = 8101\n").expect("valid");
        let taken = RegistryError::Invalid(vec![FieldError::new(
            "port",
            "Port 8101 is already used by proxy “b”.",
        )]);
        assert_eq!(
            file.applying_failed(Some(0), &taken).to_string(),
            "ci.toml:4: proxy “a”: port: port 8101 is already used by proxy “b”"
        );
    }

    #[test]
    fn messages_become_clauses() {
        assert_eq!(clause("Choose a provider."), "choose a provider");
        assert_eq!(clause("AWS region unknown."), "AWS region unknown");
        assert_eq!(clause("“x” is not a URL"), "“x” is not a URL");
    }
}
