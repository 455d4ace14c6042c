//! Why a request missed: the recorded entry nearest to it, and the JSON paths in which the two
//! request bodies differ (`messages[1].content`, `temperature`).

use serde::Serialize;
use serde_json::Value;

/// At most this many differing paths are named; a request that differs in more is far away.
const MAX_PATHS: usize = 12;

/// A recorded entry and how a request differs from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nearest {
    pub key: String,
    /// The paths in which the bodies differ, at most a dozen, in body order.
    pub differs: Vec<String>,
    /// How many paths differ in all (past the ones named).
    pub differences: usize,
    pub recorded_at: String,
}

impl Nearest {
    /// One line for an error message or a log entry.
    pub fn describe(&self) -> String {
        let short = self.key.get(..12).unwrap_or(&self.key);
        let mut named = self.differs.join(", ");
        if self.differences > self.differs.len() {
            named.push_str(&format!(
                " and {} more",
                self.differences - self.differs.len()
            ));
        }
        if named.is_empty() {
            format!(
                "the nearest recorded entry ({short}…) has the same body; the path, query, cassette or credential differs"
            )
        } else {
            format!(
                "the nearest recorded entry ({short}…, recorded {}) differs in {named}",
                self.recorded_at
            )
        }
    }
}

/// Every path at which `a` and `b` differ: a key present on one side only, a list item past
/// the other's end, or a different value.
pub fn differing_paths(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(a, b, &mut String::new(), &mut out, &mut 0);
    out
}

/// Characters two differing strings share at their start and end: of two entries that differ
/// in as many paths, the one whose texts are closer is nearer.
fn shared_ends(a: &str, b: &str) -> usize {
    let prefix = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let suffix = a
        .chars()
        .rev()
        .zip(b.chars().rev())
        .take_while(|(x, y)| x == y)
        .count();
    prefix + suffix
}

fn walk(a: &Value, b: &Value, path: &mut String, out: &mut Vec<String>, closeness: &mut usize) {
    match (a, b) {
        (Value::Object(left), Value::Object(right)) => {
            for (name, value) in left {
                let length = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(name);
                match right.get(name) {
                    Some(other) => walk(value, other, path, out, closeness),
                    None => out.push(path.clone()),
                }
                path.truncate(length);
            }
            for name in right.keys().filter(|name| !left.contains_key(*name)) {
                out.push(if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                });
            }
        }
        (Value::Array(left), Value::Array(right)) => {
            for index in 0..left.len().max(right.len()) {
                let length = path.len();
                path.push_str(&format!("[{index}]"));
                match (left.get(index), right.get(index)) {
                    (Some(one), Some(other)) => walk(one, other, path, out, closeness),
                    _ => out.push(path.clone()),
                }
                path.truncate(length);
            }
        }
        (one, other) if one == other => {}
        (Value::String(one), Value::String(other)) => {
            *closeness += shared_ends(one, other);
            out.push(path.clone());
        }
        _ => out.push(if path.is_empty() {
            "(the whole body)".to_owned()
        } else {
            path.clone()
        }),
    }
}

/// The `count` candidates whose bodies differ from `body` in the fewest paths, nearest first.
pub fn nearest<'a>(
    body: &Value,
    candidates: impl Iterator<Item = (&'a str, &'a Value, &'a str)>,
    count: usize,
) -> Vec<Nearest> {
    let mut found: Vec<(Nearest, usize)> = candidates
        .map(|(key, recorded, recorded_at)| {
            let mut differs = Vec::new();
            let mut closeness = 0;
            walk(
                body,
                recorded,
                &mut String::new(),
                &mut differs,
                &mut closeness,
            );
            let differences = differs.len();
            differs.truncate(MAX_PATHS);
            let near = Nearest {
                key: key.to_owned(),
                differs,
                differences,
                recorded_at: recorded_at.to_owned(),
            };
            (near, closeness)
        })
        .collect();
    found.sort_by_key(|(near, closeness)| (near.differences, std::cmp::Reverse(*closeness)));
    found.truncate(count);
    found.into_iter().map(|(near, _)| near).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_paths_that_changed_are_named() {
        let recorded = json!({"model": "m", "temperature": 0, "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]});
        let asked = json!({"model": "m", "temperature": 0.5, "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello!"}],
            "user": "u1"});
        assert_eq!(
            differing_paths(&asked, &recorded),
            ["temperature", "messages[1].content", "user"]
        );
        let longer = json!({"messages": [1, 2, 3]});
        assert_eq!(
            differing_paths(&longer, &json!({"messages": [1, 2]})),
            ["messages[2]"]
        );
        assert!(differing_paths(&recorded, &recorded).is_empty());
    }

    #[test]
    fn the_nearest_entry_is_the_one_with_fewest_differences() {
        let asked = json!({"a": 1, "b": 2, "c": 3});
        let far = json!({"a": 9, "b": 9, "c": 9});
        let near = json!({"a": 1, "b": 2, "c": 4});
        let all = nearest(
            &asked,
            [("far", &far, "t1"), ("near", &near, "t2")].into_iter(),
            5,
        );
        assert_eq!(all.len(), 2);
        let found = &all[0];
        assert_eq!(found.key, "near");
        assert_eq!(found.differs, ["c"]);
        assert!(
            found.describe().contains("differs in c"),
            "{}",
            found.describe()
        );
        assert!(nearest(&asked, std::iter::empty(), 1).is_empty());

        let prompt = json!({"q": "what is 4242 plus 4243?"});
        let close = json!({"q": "what is 4242 plus 4242?"});
        let other = json!({"q": "what is 17 plus 17?"});
        let ranked = nearest(
            &prompt,
            [("other", &other, "t"), ("close", &close, "t")].into_iter(),
            2,
        );
        assert_eq!(
            ranked[0].key, "close",
            "of equal differences, the closer text"
        );
    }
}
