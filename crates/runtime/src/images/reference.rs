//! Image references as containerd's CRI plugin reads a pod's `image` field (distribution's
//! `ParseDockerRef`): the grammar `[domain/]path[:tag][@digest]`, Docker Hub's defaults, and
//! one canonical name per image so that `busybox`, `busybox:latest` and
//! `docker.io/library/busybox:latest` find the same entry of the store.

/// Why a reference is refused: distribution's and go-digest's own words, so a pod's status
/// reads as it would on a containerd node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    Identifier(String),
    #[error("repository name must not be more than {MAX_PATH} characters")]
    NameTooLong,
    #[error("invalid checksum digest format")]
    DigestFormat,
    #[error("invalid checksum digest length")]
    DigestLength,
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
}

/// Distribution's limit on the path (the name without its domain).
const MAX_PATH: usize = 255;
/// Docker Hub, the registry of a name without a domain.
const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's former name, still accepted and written as [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of Docker Hub's official images (`busybox` is `library/busybox`).
const OFFICIAL_NAMESPACE: &str = "library/";
const DEFAULT_TAG: &str = "latest";

/// The canonical name of `reference`: `domain/path:tag`, or `domain/path@digest` when it has
/// a digest (a tag next to a digest is dropped, as containerd does: the digest decides).
pub fn normalize(reference: &str) -> Result<String, ReferenceError> {
    if is_identifier(reference) {
        return Err(ReferenceError::Identifier(reference.to_string()));
    }
    if reference.is_empty() {
        return Err(ReferenceError::NameEmpty);
    }
    let (named, digest) = match reference.split_once('@') {
        Some((named, digest)) => (named, Some(digest)),
        None => (reference, None),
    };
    let (domain, remainder) = split_domain(named);
    // A tag follows the last ':' that comes after the domain.
    let (path, tag) = match remainder.rsplit_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (remainder.as_str(), None),
    };
    if path.to_lowercase() != path {
        return Err(ReferenceError::Uppercase(path.to_string()));
    }
    let valid =
        is_domain(domain) && path.split('/').all(is_path_component) && tag.is_none_or(is_tag);
    if !valid {
        return Err(ReferenceError::InvalidFormat);
    }
    if path.len() > MAX_PATH {
        return Err(ReferenceError::NameTooLong);
    }
    match digest {
        Some(digest) => {
            validate_digest(digest)?;
            Ok(format!("{domain}/{path}@{digest}"))
        }
        None => Ok(format!("{domain}/{path}:{}", tag.unwrap_or(DEFAULT_TAG))),
    }
}

/// The domain and the rest, as distribution's `splitDockerDomain`: the first component is a
/// registry when it is `localhost`, has a '.' or a ':' (a host name, an address, a port), or
/// has an uppercase letter (which no repository path may have).
fn split_domain(named: &str) -> (&str, String) {
    let (domain, rest) = match named.split_once('/') {
        None => (DEFAULT_DOMAIN, named),
        Some((LEGACY_DEFAULT_DOMAIN, rest)) => (DEFAULT_DOMAIN, rest),
        Some((first, rest))
            if first == "localhost"
                || first.contains(['.', ':'])
                || first.to_lowercase() != first =>
        {
            (first, rest)
        }
        Some(_) => (DEFAULT_DOMAIN, named),
    };
    if domain == DEFAULT_DOMAIN && !rest.contains('/') {
        (domain, format!("{OFFICIAL_NAMESPACE}{rest}"))
    } else {
        (domain, rest.to_string())
    }
}

/// 64 lowercase hex digits: an image id, which is not a name.
fn is_identifier(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `host[:port]`, the host a DNS name of letters, digits and inner dashes, an IPv4 address,
/// or an IPv6 address in brackets.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (domain, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(address) => {
            !address.is_empty() && address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
        }
        None => host.split('.').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-')
        }),
    };
    port_ok && host_ok
}

/// Lowercase letters and digits, in runs joined by one '.', one or two '_', or any dashes.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut index = 0;
    while index < bytes.len() {
        let run = bytes[index..]
            .iter()
            .take_while(|b| alphanumeric(b))
            .count();
        if run == 0 {
            return false;
        }
        index += run;
        if index == bytes.len() {
            return true;
        }
        let separator = bytes[index..]
            .iter()
            .take_while(|b| !alphanumeric(b))
            .count();
        let valid_separator = match &bytes[index..index + separator] {
            [b'.'] | [b'_'] | [b'_', b'_'] => true,
            dashes => dashes.iter().all(|b| *b == b'-'),
        };
        if !valid_separator {
            return false;
        }
        index += separator;
    }
    false
}

/// A word character, then up to 127 word characters, dots and dashes.
fn is_tag(tag: &str) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    bytes.first().is_some_and(word)
        && bytes.len() <= 128
        && bytes[1..]
            .iter()
            .all(|b| word(b) || *b == b'.' || *b == b'-')
}

/// `algorithm:hex`: first the reference grammar (an algorithm, then at least 32 hex digits),
/// then go-digest's checks for the algorithms containerd registers.
fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    let (algorithm, encoded) = digest
        .split_once(':')
        .ok_or(ReferenceError::InvalidFormat)?;
    if !is_digest_algorithm(algorithm)
        || encoded.len() < 32
        || !encoded.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ReferenceError::InvalidFormat);
    }
    let hex_length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ReferenceError::DigestUnsupported),
    };
    if encoded.len() != hex_length {
        return Err(ReferenceError::DigestLength);
    }
    if encoded.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::DigestFormat);
    }
    Ok(())
}

/// Components of a letter then letters and digits, joined by one of `+ . - _`.
fn is_digest_algorithm(algorithm: &str) -> bool {
    algorithm.split(['+', '.', '-', '_']).all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";

    #[test]
    fn names_get_docker_hubs_defaults_and_the_latest_tag() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:latest", "docker.io/library/busybox:latest"),
            ("busybox:1.28", "docker.io/library/busybox:1.28"),
            ("luksa/kubia-pet", "docker.io/luksa/kubia-pet:latest"),
            ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "index.docker.io/luksa/kubia-pet",
                "docker.io/luksa/kubia-pet:latest",
            ),
            (
                "docker.io/library/busybox:1.28",
                "docker.io/library/busybox:1.28",
            ),
            ("a/b/c", "docker.io/a/b/c:latest"),
        ];
        for (given, expected) in cases {
            assert_eq!(normalize(given).as_deref(), Ok(expected), "{given}");
        }
    }

    #[test]
    fn a_first_component_with_a_dot_a_port_or_localhost_is_a_registry() {
        let cases = [
            (
                "registry.k8s.io/nginx-slim:0.8",
                "registry.k8s.io/nginx-slim:0.8",
            ),
            ("k8s.gcr.io/nginx-slim:0.7", "k8s.gcr.io/nginx-slim:0.7"),
            (
                "gcr.io/google_containers/nginx-slim:0.8",
                "gcr.io/google_containers/nginx-slim:0.8",
            ),
            (
                "r.deso.tech/library/nginx",
                "r.deso.tech/library/nginx:latest",
            ),
            // Another registry's single-component name gets no `library/`.
            ("quay.io/etcd", "quay.io/etcd:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("localhost:5000/app:1", "localhost:5000/app:1"),
            ("registry:5000/team/app", "registry:5000/team/app:latest"),
            ("127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v1"),
            ("[::1]:5000/app", "[::1]:5000/app:latest"),
            ("Registry/app", "Registry/app:latest"),
            // Alone, `localhost:5000` is the image `localhost` tagged 5000.
            ("localhost:5000", "docker.io/library/localhost:5000"),
        ];
        for (given, expected) in cases {
            assert_eq!(normalize(given).as_deref(), Ok(expected), "{given}");
        }
    }

    #[test]
    fn a_digest_names_the_image_and_wins_over_a_tag() {
        let digested = format!("docker.io/library/busybox@sha256:{HEX}");
        for given in [
            format!("busybox@sha256:{HEX}"),
            format!("busybox:1.28@sha256:{HEX}"),
            format!("docker.io/library/busybox:latest@sha256:{HEX}"),
        ] {
            assert_eq!(normalize(&given), Ok(digested.clone()), "{given}");
        }
        assert_eq!(
            normalize(&format!("localhost:5000/app@sha256:{HEX}")),
            Ok(format!("localhost:5000/app@sha256:{HEX}"))
        );
        let sha512 = HEX.repeat(2);
        assert_eq!(
            normalize(&format!("app@sha512:{sha512}")),
            Ok(format!("docker.io/library/app@sha512:{sha512}"))
        );
    }

    #[test]
    fn malformed_references_are_refused_with_distributions_reason() {
        use ReferenceError::*;
        let long = "a".repeat(256);
        let cases: Vec<(String, ReferenceError)> = vec![
            (String::new(), NameEmpty),
            ("a b".into(), InvalidFormat),
            (" busybox".into(), InvalidFormat),
            ("/busybox".into(), InvalidFormat),
            ("busybox/".into(), InvalidFormat),
            ("a//b".into(), InvalidFormat),
            ("busybox:".into(), InvalidFormat),
            ("busybox:-1".into(), InvalidFormat),
            (format!("busybox:{}", "t".repeat(129)), InvalidFormat),
            ("a..b".into(), InvalidFormat),
            ("a___b".into(), InvalidFormat),
            ("-a".into(), InvalidFormat),
            ("bad-.host/app".into(), InvalidFormat),
            ("host:port/app".into(), InvalidFormat),
            ("Busybox".into(), Uppercase("library/Busybox".into())),
            ("localhost/App:1".into(), Uppercase("App".into())),
            (HEX.into(), Identifier(HEX.into())),
            (long.clone(), NameTooLong),
            ("busybox@sha256:abc".into(), InvalidFormat),
            (format!("busybox@sha256:{}", &HEX[..40]), DigestLength),
            (
                format!("busybox@sha256:{}", HEX.to_uppercase()),
                DigestFormat,
            ),
            (format!("busybox@md5:{HEX}"), DigestUnsupported),
            ("busybox@sha256".into(), InvalidFormat),
            ("busybox@".into(), InvalidFormat),
            (format!("busybox@-sha256:{HEX}"), InvalidFormat),
        ];
        for (given, expected) in cases {
            assert_eq!(normalize(&given), Err(expected), "{given:?}");
        }
    }

    #[test]
    fn path_components_allow_distributions_separators() {
        for valid in [
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "busy--box",
            "nginx-slim",
            "go1.21",
        ] {
            assert!(is_path_component(valid), "{valid}");
        }
        for invalid in ["", "a.", ".a", "a.-b", "a_.b", "A", "a+b"] {
            assert!(!is_path_component(invalid), "{invalid}");
        }
    }
}
