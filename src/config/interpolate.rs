//! `${VAR}` interpolation of configuration text from the environment.
//!
//! Supported forms, as in Vector and POSIX shells:
//! - `${VAR}`: the value of `VAR`, or an error if it is unset.
//! - `${VAR:-default}`: `default` when `VAR` is unset or empty.
//! - `${VAR:?message}`: an error carrying `message` when `VAR` is unset or empty.
//! - `$$`: a literal `$`.
//!
//! Interpolation runs on the raw text before TOML parsing, so a variable can
//! stand anywhere a literal could. Values with a newline are rejected: they
//! would shift every line number after them and could smuggle in whole TOML
//! tables.
//!
//! Errors never contain a variable's value, only its name, because values are
//! often tokens.

/// A problem found while interpolating, at a byte offset in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    pub offset: usize,
    pub message: String,
}

/// Expands every reference in `text` using `lookup`, collecting all errors.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<InterpolationError>) {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    let mut consumed = 0;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let offset = consumed + at;
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            consumed += at + 2;
            rest = stripped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            // A lone `$` (e.g. inside a regex) is kept as written.
            out.push('$');
            consumed += at + 1;
            rest = after;
            continue;
        };
        let Some(close) = body.find('}') else {
            errors.push(InterpolationError {
                offset,
                message: "unterminated `${`: expected `}`".into(),
            });
            out.push_str(&rest[at..]);
            return (out, errors);
        };
        let reference = &body[..close];
        match expand(reference, &lookup) {
            Ok(value) => out.push_str(&value),
            Err(message) => errors.push(InterpolationError { offset, message }),
        }
        let used = at + 2 + close + 1;
        consumed += used;
        rest = &rest[used..];
    }
    out.push_str(rest);
    (out, errors)
}

fn expand(reference: &str, lookup: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, operator) = match reference.find(":-").or_else(|| reference.find(":?")) {
        Some(i) => (
            &reference[..i],
            Some((&reference[i..i + 2], &reference[i + 2..])),
        ),
        None => (reference, None),
    };
    if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
        return Err(format!(
            "invalid variable reference `${{{name}}}`: names use letters, digits and `_`"
        ));
    }
    let value = lookup(name).filter(|v| !(operator.is_some() && v.is_empty()));
    let value = match (value, operator) {
        (Some(v), _) => v,
        (None, Some((":-", default))) => default.to_string(),
        (None, Some((_, message))) => {
            let message = if message.is_empty() {
                "required but not set"
            } else {
                message
            };
            return Err(format!("environment variable `{name}`: {message}"));
        }
        (None, None) => {
            return Err(format!(
                "environment variable `{name}` is not set (use `${{{name}:-default}}` for an optional value)"
            ));
        }
    };
    if value.contains('\n') || value.contains('\r') {
        return Err(format!(
            "environment variable `{name}` contains a line break, which is not allowed in configuration"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("runner-7".into()),
            "EMPTY" => Some(String::new()),
            "MULTI" => Some("a\nb".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_all_forms() {
        let (out, errors) = interpolate(
            "a=${HOST} b=${MISSING:-/var/log} c=${EMPTY:-x} d=$$HOME e=^x$ f=${EMPTY}",
            env,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out, "a=runner-7 b=/var/log c=x d=$HOME e=^x$ f=");
    }

    #[test]
    fn reports_every_missing_variable_with_offset() {
        let text = "x = \"${NOPE}\"\ny = \"${ALSO:?set the fleet token}\"\n";
        let (_, errors) = interpolate(text, env);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].offset, text.find("${NOPE").unwrap());
        assert!(errors[0].message.contains("`NOPE` is not set"));
        assert!(errors[1].message.contains("set the fleet token"));
    }

    #[test]
    fn rejects_values_with_line_breaks_without_echoing_them() {
        let (_, errors) = interpolate("${MULTI}", env);
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].message.contains("a\nb"));
    }

    #[test]
    fn rejects_bad_names_and_unterminated_references() {
        let (_, errors) = interpolate("${BAD NAME} ${OPEN", env);
        assert_eq!(errors.len(), 2);
    }
}
