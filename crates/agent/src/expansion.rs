//! `$(VAR)` references in a container's `command`, `args` and `env[].value`, expanded as the
//! kubelet does (its fork of Go's `os.Expand`, `third_party/forked/golang/expansion`):
//! - `$(NAME)` becomes the variable's value when `lookup` knows it, and stays `$(NAME)` when
//!   it does not;
//! - `$$` is an escaped `$` (so `$$(NAME)` is the literal text `$(NAME)`);
//! - any other `$`, and an unterminated `$(`, are copied as they are.

/// Expands the references in `input`; `lookup` answers a variable's value, if it is defined.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut output: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            output.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match bytes[cursor + 1] {
                b'$' => {
                    output.push(b'$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match lookup(name) {
                            Some(value) => output.extend_from_slice(value.as_bytes()),
                            None => {
                                output.extend_from_slice(b"$(");
                                output.extend_from_slice(name.as_bytes());
                                output.push(b')');
                            }
                        }
                        close + 1
                    }
                    // An unterminated reference is text; the scan goes on after its `(`.
                    None => {
                        output.extend_from_slice(b"$(");
                        1
                    }
                },
                // A `$` that starts no reference is kept with the byte after it.
                other => {
                    output.push(b'$');
                    output.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    output.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    // Bytes are only ever copied in their order, so the output is as valid UTF-8 as the input.
    String::from_utf8(output).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_vars(input: &str) -> String {
        expand(input, |name| match name {
            "POD_NAMESPACE" => Some("shop".into()),
            "VAR_A" => Some("A".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        })
    }

    #[test]
    fn defined_references_become_their_values() {
        assert_eq!(
            with_vars("consul-0.consul.$(POD_NAMESPACE).svc.cluster.local"),
            "consul-0.consul.shop.svc.cluster.local"
        );
        assert_eq!(with_vars("$(VAR_A)$(VAR_A)-$(EMPTY)-"), "AA--");
        assert_eq!(with_vars("$(VAR_A)"), "A");
    }

    #[test]
    fn undefined_references_stay_literal() {
        assert_eq!(with_vars("x $(NOPE) y"), "x $(NOPE) y");
        assert_eq!(with_vars("$()"), "$()");
    }

    #[test]
    fn a_double_dollar_escapes_a_reference() {
        assert_eq!(with_vars("$$(VAR_A)"), "$(VAR_A)");
        assert_eq!(with_vars("$$$(VAR_A)"), "$A");
        assert_eq!(with_vars("$$$$(VAR_A)"), "$$(VAR_A)");
        assert_eq!(with_vars("cost: $$5"), "cost: $5");
    }

    #[test]
    fn other_dollars_and_unterminated_references_are_kept() {
        assert_eq!(with_vars("$VAR_A ${VAR_A} $"), "$VAR_A ${VAR_A} $");
        assert_eq!(with_vars("$(VAR_A"), "$(VAR_A");
        assert_eq!(with_vars("$($(VAR_A)"), "$($(VAR_A)");
        assert_eq!(with_vars("echo $1 $(VAR_A)"), "echo $1 A");
        assert_eq!(with_vars("ünï $(VAR_A) çødé $é"), "ünï A çødé $é");
        assert_eq!(with_vars(""), "");
    }
}
