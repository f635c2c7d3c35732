//! What a petset server and its agents both need to trust each other from the first byte:
//! the join token and its CA pin, the certificate requests an agent makes and the server
//! signs, node password hashes, the TLS configurations built from the resulting PEMs, the
//! join's wire format, the reader of a certificate's subject (who a client certificate says
//! it is), and the signed service-account tokens pods authenticate with.

pub mod csr;
mod error;
pub mod files;
pub mod password;
mod random;
pub mod service_account_token;
pub mod subject;
pub mod tls;
pub mod token;
pub mod wire;

pub use csr::{CertificateAuthority, KeyAndRequest, new_node_request};
pub use error::PkiError;
pub use subject::{Subject, common_name, organizations, subject};
pub use token::{BootstrapToken, JoinToken, ca_hash, ca_hash_der};
