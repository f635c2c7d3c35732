//! Who a certificate names: the subject's common name and organizations, read straight from
//! the DER (X.509: `Certificate` → `tbsCertificate` → `subject`). Authentication reads these
//! from certificates the TLS layer has already verified, so this reader only has to be
//! correct and never panic on damaged input, not to validate.

/// The identity a certificate's subject carries, as Kubernetes reads it: the user is the
/// common name, the groups are the organizations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    /// The first `CN` attribute, if any.
    pub common_name: Option<String>,
    /// Every `O` attribute, in order.
    pub organizations: Vec<String>,
}

/// The subject of a DER certificate; `None` when the certificate is not well formed.
pub fn subject(certificate: &[u8]) -> Option<Subject> {
    let mut subject = Subject::default();
    for (oid, text) in attributes(certificate)? {
        match oid {
            COMMON_NAME if subject.common_name.is_none() => subject.common_name = Some(text),
            ORGANIZATION => subject.organizations.push(text),
            _ => {}
        }
    }
    Some(subject)
}

/// The subject's first common name; `None` when it has none or the certificate is damaged.
pub fn common_name(certificate: &[u8]) -> Option<String> {
    subject(certificate)?.common_name
}

/// Every organization (`O`) of the subject, in order; empty when there is none or the
/// certificate is damaged.
pub fn organizations(certificate: &[u8]) -> Vec<String> {
    subject(certificate)
        .map(|subject| subject.organizations)
        .unwrap_or_default()
}

/// The subject's attributes as (OID, text) pairs; `None` when any part is not well formed.
fn attributes(certificate: &[u8]) -> Option<Vec<(&[u8], String)>> {
    let (certificate, _) = Der::read(certificate, SEQUENCE)?;
    let (tbs, _) = Der::read(certificate, SEQUENCE)?;
    let mut rest = tbs;
    // An explicit version ([0]) comes first when present.
    if rest.first() == Some(&EXPLICIT_VERSION) {
        rest = Der::read(rest, EXPLICIT_VERSION)?.1;
    }
    let (_serial, rest) = Der::read(rest, INTEGER)?;
    let (_signature, rest) = Der::read(rest, SEQUENCE)?;
    let (_issuer, rest) = Der::read(rest, SEQUENCE)?;
    let (_validity, rest) = Der::read(rest, SEQUENCE)?;
    let (mut names, _) = Der::read(rest, SEQUENCE)?;
    let mut found = Vec::new();
    while !names.is_empty() {
        let (set, after) = Der::read(names, SET)?;
        names = after;
        let mut set = set;
        while !set.is_empty() {
            let (attribute, after) = Der::read(set, SEQUENCE)?;
            set = after;
            let (oid, value) = Der::read(attribute, OID)?;
            let tag = *value.first()?;
            let (text, _) = Der::read(value, tag)?;
            // Names petset reads are text; an attribute that is not UTF-8 is not one of them.
            if let Ok(text) = String::from_utf8(text.to_vec()) {
                found.push((oid, text));
            }
        }
    }
    Some(found)
}

const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const EXPLICIT_VERSION: u8 = 0xa0;
/// 2.5.4.3 (id-at-commonName).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// 2.5.4.10 (id-at-organizationName).
const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// A minimal DER reader: one tag-length-value at a time.
struct Der;

impl Der {
    /// The contents of the element at the start of `input` if it has `tag`, and what follows.
    fn read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        if *input.first()? != tag {
            return None;
        }
        let first = *input.get(1)?;
        let (length, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let bytes = input.get(2..2 + count)?;
            let length = bytes
                .iter()
                .fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
            (length, 2 + count)
        };
        let end = header.checked_add(length)?;
        Some((input.get(header..end)?, input.get(end..)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(common_name: Option<&str>, organizations: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        for organization in organizations {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *organization);
        }
        if let Some(common_name) = common_name {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn the_common_name_and_organizations_are_read_from_the_subject() {
        let der = certificate(Some("system:node:x"), &["system:nodes"]);
        assert_eq!(
            subject(&der),
            Some(Subject {
                common_name: Some("system:node:x".into()),
                organizations: vec!["system:nodes".into()],
            })
        );
        assert_eq!(common_name(&der).as_deref(), Some("system:node:x"));
        assert_eq!(organizations(&der), ["system:nodes"]);
    }

    #[test]
    fn a_subject_may_name_several_organizations_or_none() {
        // rcgen keeps one value per attribute type, so several organizations are written
        // by hand: a subject of three RDNs, O=a, O=b, CN=c.
        let der = certificate(Some("c"), &["placeholder"]);
        let several = with_subject(
            &der,
            &[(ORGANIZATION, "a"), (ORGANIZATION, "b"), (COMMON_NAME, "c")],
        );
        assert_eq!(organizations(&several), ["a", "b"]);
        assert_eq!(common_name(&several).as_deref(), Some("c"));

        let none = certificate(None, &[]);
        assert_eq!(subject(&none), Some(Subject::default()));
    }

    #[test]
    fn damaged_certificates_have_no_subject() {
        let whole = certificate(Some("someone"), &["group"]);
        for cut in [0, 1, 2, 10, whole.len() / 2] {
            assert_eq!(subject(&whole[..cut]), None, "cut at {cut}");
            assert_eq!(common_name(&whole[..cut]), None, "cut at {cut}");
            assert!(organizations(&whole[..cut]).is_empty(), "cut at {cut}");
        }
        assert_eq!(subject(b"\x30\x84\xff\xff\xff\xff"), None);
    }

    /// `der` with its subject replaced by one RDN per attribute (the signature no longer
    /// matches, which the subject reader does not look at).
    fn with_subject(der: &[u8], attributes: &[(&[u8], &str)]) -> Vec<u8> {
        let (certificate, _) = Der::read(der, SEQUENCE).expect("certificate");
        let (tbs, after_tbs) = Der::read(certificate, SEQUENCE).expect("tbs");
        let (version, rest) = Der::read(tbs, EXPLICIT_VERSION).expect("version");
        let mut parts: Vec<Vec<u8>> = vec![element(EXPLICIT_VERSION, version)];
        let mut rest = rest;
        for tag in [INTEGER, SEQUENCE, SEQUENCE, SEQUENCE] {
            let (contents, after) = Der::read(rest, tag).expect("field");
            parts.push(element(tag, contents));
            rest = after;
        }
        let (_subject, after_subject) = Der::read(rest, SEQUENCE).expect("subject");
        let mut names = Vec::new();
        for (oid, text) in attributes {
            let attribute = [element(OID, oid), element(0x0c, text.as_bytes())].concat();
            names.extend(element(SET, &element(SEQUENCE, &attribute)));
        }
        parts.push(element(SEQUENCE, &names));
        parts.push(after_subject.to_vec());
        let tbs = element(SEQUENCE, &parts.concat());
        element(SEQUENCE, &[tbs, after_tbs.to_vec()].concat())
    }

    fn element(tag: u8, contents: &[u8]) -> Vec<u8> {
        let length = contents.len();
        let mut out = vec![tag];
        if length < 0x80 {
            out.push(length as u8);
        } else {
            let bytes: Vec<u8> = length
                .to_be_bytes()
                .into_iter()
                .skip_while(|byte| *byte == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend(contents);
        out
    }
}
