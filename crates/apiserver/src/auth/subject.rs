//! The subject of a client certificate: its common name and organizations, the two parts
//! upstream's x509 authenticator turns into a user name and groups.
//!
//! A stand-in for `petset-pki`'s `subject` until that crate is merged; everything else calls
//! [`subject`] only, so swapping it is one line.

/// What a certificate's subject says about who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
}

/// 2.5.4.3, id-at-commonName.
const COMMON_NAME_OID: &[u8] = &[0x55, 0x04, 0x03];
/// 2.5.4.10, id-at-organizationName.
const ORGANIZATION_OID: &[u8] = &[0x55, 0x04, 0x0a];

/// The subject of a DER certificate (`Certificate` → `tbsCertificate` → `subject`); `None`
/// when the bytes are not a certificate this walk understands.
pub fn subject(certificate: &[u8]) -> Option<Subject> {
    let signed = Elements(certificate).next_with(Tag::SEQUENCE)?;
    let tbs = Elements(signed).next_with(Tag::SEQUENCE)?;
    // tbsCertificate: [0] version (optional), serial, signature, issuer, validity, subject.
    let mut fields = Elements(tbs);
    if fields.next()?.tag == Tag::VERSION {
        let _serial = fields.next()?;
    }
    let _signature = fields.next_with(Tag::SEQUENCE)?;
    let _issuer = fields.next_with(Tag::SEQUENCE)?;
    let _validity = fields.next_with(Tag::SEQUENCE)?;
    let names = fields.next_with(Tag::SEQUENCE)?;
    let mut found = Subject {
        common_name: None,
        organizations: Vec::new(),
    };
    // Name: SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue).
    let mut relative_names = Elements(names);
    while !relative_names.0.is_empty() {
        let mut attributes = Elements(relative_names.next_with(Tag::SET)?);
        while !attributes.0.is_empty() {
            let mut attribute = Elements(attributes.next_with(Tag::SEQUENCE)?);
            let oid = attribute.next_with(Tag::OID)?;
            let value = attribute.next()?;
            let text = String::from_utf8(value.contents.to_vec()).ok()?;
            if oid == COMMON_NAME_OID && found.common_name.is_none() {
                found.common_name = Some(text);
            } else if oid == ORGANIZATION_OID {
                found.organizations.push(text);
            }
        }
    }
    Some(found)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag(u8);

impl Tag {
    const OID: Tag = Tag(0x06);
    const SEQUENCE: Tag = Tag(0x30);
    const SET: Tag = Tag(0x31);
    /// `[0] EXPLICIT Version`.
    const VERSION: Tag = Tag(0xa0);
}

/// One DER tag-length-value.
struct Element<'a> {
    tag: Tag,
    contents: &'a [u8],
}

/// The elements of a DER encoding one after the other; `None` ends at the first malformed one.
struct Elements<'a>(&'a [u8]);

impl<'a> Elements<'a> {
    fn next_with(&mut self, tag: Tag) -> Option<&'a [u8]> {
        let element = self.next()?;
        (element.tag == tag).then_some(element.contents)
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        let (&tag, rest) = self.0.split_first()?;
        let (&length_byte, rest) = rest.split_first()?;
        let (length, rest) = if length_byte & 0x80 == 0 {
            (usize::from(length_byte), rest)
        } else {
            // Long form: the low bits count the length's own bytes (at most four here).
            let count = usize::from(length_byte & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (digits, rest) = rest.split_at(count);
            let length = digits
                .iter()
                .fold(0usize, |total, digit| (total << 8) | usize::from(*digit));
            (length, rest)
        };
        if rest.len() < length {
            return None;
        }
        let (contents, after) = rest.split_at(length);
        self.0 = after;
        Some(Element {
            tag: Tag(tag),
            contents,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(names: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let signed = params.self_signed(&key).expect("certificate");
        signed.der().to_vec()
    }

    #[test]
    fn a_node_certificate_names_the_node_and_its_group() {
        let der = certificate(&[
            (rcgen::DnType::OrganizationName, "system:nodes"),
            (rcgen::DnType::CommonName, "system:node:n1"),
        ]);
        assert_eq!(
            subject(&der),
            Some(Subject {
                common_name: Some("system:node:n1".into()),
                organizations: vec!["system:nodes".into()],
            })
        );
    }

    #[test]
    fn a_subject_without_common_name_has_none() {
        let der = certificate(&[(rcgen::DnType::OrganizationName, "team")]);
        let found = subject(&der).expect("a certificate");
        assert_eq!(found.common_name, None);
        assert_eq!(found.organizations, vec!["team".to_string()]);
    }

    #[test]
    fn damaged_bytes_are_no_subject() {
        let der = certificate(&[(rcgen::DnType::CommonName, "x")]);
        assert_eq!(subject(&der[..der.len() / 2]), None);
        assert_eq!(subject(&[]), None);
        assert_eq!(subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject(b"not a certificate"), None);
    }
}
