//! `petset kubeconfig --user NAME [--group G]…`: a kubeconfig for another user than the admin,
//! with a client certificate the cluster CA signs (CN = the user, O = each group, as upstream's
//! x509 authenticator reads them), so RBAC can be tried at once (`kubeadm kubeconfig user`).
//! It needs the CA's key, so it runs where a server's data dir is.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct KubeconfigArgs {
    /// The server's data directory (its CA and admin kubeconfig).
    #[arg(long, default_value = "./petset-data")]
    pub data_dir: PathBuf,
    /// The user the certificate names (its common name).
    #[arg(long)]
    pub user: String,
    /// A group the user is in (an organization of the certificate); repeat for several.
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Write the kubeconfig here (owner-only) instead of to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    let text = kubeconfig_for(&args)?;
    match &args.out {
        Some(path) => petset_pki::files::write_private(path, &text)
            .with_context(|| format!("writing {}", path.display())),
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("writing the kubeconfig"),
    }
}

fn kubeconfig_for(args: &KubeconfigArgs) -> anyhow::Result<String> {
    if args.user.trim().is_empty() || args.user.chars().any(char::is_control) {
        bail!("--user must name a user (no control characters)");
    }
    if args
        .groups
        .iter()
        .any(|g| g.is_empty() || g.chars().any(char::is_control))
    {
        bail!("--group must name a group (no control characters)");
    }
    let pki = args.data_dir.join("pki");
    let ca_path = pki.join("ca.crt");
    let ca_pem = std::fs::read_to_string(&ca_path).with_context(|| {
        format!(
            "reading {} (is this a server's data dir?)",
            ca_path.display()
        )
    })?;
    if !pki.join("ca.key").exists() {
        bail!(
            "{} has no ca.key: only a server's data dir can sign users' certificates",
            pki.display()
        );
    }
    let admin_path = args.data_dir.join("kubeconfig");
    let admin = kube::config::Kubeconfig::read_from(&admin_path)
        .with_context(|| format!("reading {}", admin_path.display()))?;
    let server = admin
        .clusters
        .iter()
        .find_map(|named| named.cluster.as_ref()?.server.clone())
        .with_context(|| format!("{} names no server", admin_path.display()))?;
    let groups: Vec<&str> = args.groups.iter().map(String::as_str).collect();
    let (cert, key) =
        petset_apiserver::tls::issue_user_certificate(&args.data_dir, &args.user, &groups)
            .context("signing the user's certificate")?;
    Ok(petset_apiserver::tls::user_kubeconfig(
        &server, &ca_pem, &args.user, &cert, &key,
    ))
}
