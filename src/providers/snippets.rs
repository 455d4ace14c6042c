//! Copy-paste programs that call a proxy through a provider's official SDKs: shown on each
//! proxy's card, served by the API, printed in README.md and run by the SDK suites, so what a
//! user pastes is what the tests prove works.

use serde::Serialize;

/// One complete program per language for a proxy. Each changes only the SDK's base URL (or
/// endpoint) and takes credentials from the environment variables the SDK reads by default.
/// The TypeScript program is also plain JavaScript (an ES module with top-level `await`), so
/// it runs as an `.mjs` file without a compiler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snippets {
    pub python: String,
    pub typescript: String,
    pub curl: String,
}

/// Where the programs write the proxy's address.
const BASE_URL: &str = "{base_url}";

impl Snippets {
    /// The programs with `{base_url}` replaced by the proxy's address (`http://host:port`, no
    /// trailing slash). Templates rather than `format!` keep the programs' own braces readable.
    pub(crate) fn fill(python: &str, typescript: &str, curl: &str, base_url: &str) -> Self {
        let base_url = base_url.trim_end_matches('/');
        let fill = |template: &str| template.replace(BASE_URL, base_url);
        Snippets {
            python: fill(python),
            typescript: fill(typescript),
            curl: fill(curl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ProviderKind;

    /// README.md's generated part sits between these markers.
    const START: &str = "<!-- snippets:start";
    const END: &str = "<!-- snippets:end -->";

    /// The README's example ports, one per provider in their usual order (8001 OpenAI …).
    fn readme_base_url(index: usize) -> String {
        format!("http://127.0.0.1:{}", 8001 + index)
    }

    /// What README.md must hold between the markers.
    fn readme_section() -> String {
        let mut out = String::new();
        for (index, kind) in ProviderKind::ALL.into_iter().enumerate() {
            let url = readme_base_url(index);
            let snippets = kind.provider().snippets(&url);
            out.push_str(&format!("\n### {} (proxy at `{url}`)\n", kind.name()));
            for (label, fence, code) in [
                ("Python", "python", &snippets.python),
                (
                    "TypeScript (also runs as JavaScript)",
                    "typescript",
                    &snippets.typescript,
                ),
                ("curl", "sh", &snippets.curl),
            ] {
                out.push_str(&format!("\n{label}:\n\n```{fence}\n{code}\n```\n"));
            }
        }
        out.push('\n');
        out
    }

    #[test]
    fn readme_shows_exactly_the_generated_snippets() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find(START)
            .and_then(|at| readme[at..].find("-->").map(|end| at + end + 3))
            .expect("README.md marks the snippets with <!-- snippets:start … -->");
        let end = readme[start..]
            .find(END)
            .map(|at| start + at)
            .expect("README.md ends the snippets with <!-- snippets:end -->");
        let expected = readme_section();
        assert!(
            readme[start..end] == expected,
            "README.md's snippets differ from what the providers generate; replace the text \
             between the markers with:\n{expected}"
        );
    }

    #[test]
    fn every_program_has_the_proxy_url_and_no_placeholder_left() {
        for kind in ProviderKind::ALL {
            let snippets = kind.provider().snippets("http://devbox.corp:8123/");
            for (language, code) in [
                ("python", &snippets.python),
                ("typescript", &snippets.typescript),
                ("curl", &snippets.curl),
            ] {
                assert!(
                    code.contains("http://devbox.corp:8123") && !code.contains("8123//"),
                    "{kind} {language}: {code}"
                );
                assert!(!code.contains(super::BASE_URL), "{kind} {language}: {code}");
                assert!(
                    !code.ends_with('\n'),
                    "{kind} {language} ends with a newline"
                );
                let lines = code.lines().count();
                assert!(
                    (3..=14).contains(&lines),
                    "{kind} {language}: {lines} lines"
                );
            }
        }
    }
}
