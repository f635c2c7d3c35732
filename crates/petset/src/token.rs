//! `petset token`: bootstrap tokens that let agents join (`kubeadm token` and `k3s token`'s
//! create, list and revoke), kept as Secrets in `kube-system` through the API, with the
//! admin kubeconfig.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use petset_apiserver::join::tokens;
use petset_pki::{BootstrapToken, JoinToken};

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The server's data directory (where its kubeconfig is).
    #[arg(long, default_value = "./petset-data", global = true)]
    pub data_dir: PathBuf,
    /// The admin kubeconfig [default: DATA_DIR/kubeconfig]
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    pub action: TokenAction,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Make a join token and print it in full (`K10<CA hash>::<id>.<secret>`).
    Create {
        /// How long the token is valid (`24h`, `90m`, `1h30m`); `0` never expires.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        /// What the token is for, shown by `list`.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the tokens: id (never the secret), time left, expiry and description.
    List,
    /// Delete a token (by id, or the token itself): agents can no longer join with it.
    Revoke { id: String },
}

/// Runs one `petset token` action, printing to stdout.
pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    run_to(args, &mut out).await
}

async fn run_to(args: TokenArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let path = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| args.data_dir.join("kubeconfig"));
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading the kubeconfig {}", path.display()))?;
    let ca_der = config
        .root_cert
        .as_ref()
        .and_then(|certificates| certificates.first())
        .cloned()
        .with_context(|| format!("{} names no certificate-authority-data", path.display()))?;
    let client = kube::Client::try_from(config).context("building the API client")?;
    let secrets: Api<Secret> = Api::namespaced(client, tokens::NAMESPACE);
    match args.action {
        TokenAction::Create { ttl, description } => {
            let credential = BootstrapToken::generate()?;
            let secret = tokens::secret(&credential, tokens::expiration_after(ttl), &description);
            let secret: Secret = serde_json::from_value(secret)?;
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .context("storing the token")?;
            let token = JoinToken {
                ca_hash: Some(petset_pki::ca_hash_der(&ca_der)),
                credential,
            };
            writeln!(out, "{token}")?;
        }
        TokenAction::List => {
            let listed = secrets
                .list(&ListParams::default().fields(&format!("type={}", tokens::SECRET_TYPE)))
                .await
                .context("listing the tokens")?;
            let items: Vec<serde_json::Value> = listed
                .items
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?;
            let rows = tokens::token_rows(&items, tokens::now());
            write_table(out, &rows)?;
        }
        TokenAction::Revoke { id } => {
            // A whole token names its id too (kubeadm accepts either).
            let id = id
                .split_once('.')
                .map_or(id.as_str(), |(id, _)| id)
                .to_string();
            if !BootstrapToken::is_id(&id) {
                bail!("{id:?} is not a bootstrap token id ([a-z0-9]{{6}})");
            }
            match secrets
                .delete(&tokens::secret_name(&id), &DeleteParams::default())
                .await
            {
                Ok(_) => writeln!(out, "bootstrap token {id:?} deleted")?,
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    bail!("bootstrap token {id:?} not found")
                }
                Err(error) => {
                    return Err(error).context(format!("deleting bootstrap token {id:?}"));
                }
            }
        }
    }
    Ok(())
}

/// `kubeadm token list`'s columns (without usages and groups, which petset does not have),
/// aligned with three spaces as kubectl does.
fn write_table(out: &mut impl Write, rows: &[tokens::TokenRow]) -> std::io::Result<()> {
    let mut lines = vec![[
        "TOKEN".to_string(),
        "TTL".into(),
        "EXPIRES".into(),
        "DESCRIPTION".into(),
    ]];
    for row in rows {
        lines.push([
            row.id.clone(),
            row.ttl.clone(),
            row.expires.clone(),
            row.description.clone(),
        ]);
    }
    let mut widths = [0usize; 4];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for line in &lines {
        let mut text = String::new();
        for (index, cell) in line.iter().enumerate() {
            if index + 1 == line.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}   ", width = widths[index]));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

/// A duration as Go writes them (`24h`, `90m`, `1h30m`, `45s`); a bare `0` is zero.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (use e.g. 24h, 90m, 1h30m or 0)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for character in text.chars() {
        if character.is_ascii_digit() {
            digits.push(character);
            continue;
        }
        let unit = match character {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let count: u64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        total = count
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(invalid)?;
    }
    if !digits.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// An API server over TLS on 127.0.0.1 with its admin kubeconfig in `dir`; stops when
    /// the sender drops.
    async fn serve(dir: &std::path::Path) -> (String, tokio::sync::watch::Sender<bool>) {
        use petset_apiserver::{ApiState, router, serve::serve_tls, tls};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listener");
        let address = listener.local_addr().expect("address");
        let credentials = tls::load_or_create(dir, address, "10.96.0.1".parse().expect("ip"))
            .expect("credentials");
        tls::write_kubeconfig(dir, &credentials, address).expect("kubeconfig");
        let state = ApiState::new(
            Arc::new(petset_store::LocalStore::in_memory()),
            Some(credentials.admin_token.clone()),
        );
        state.registry().bootstrap().await.expect("bootstrap");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(serve_tls(
            listener,
            credentials.server_config,
            router(state),
            stopped,
            Duration::from_secs(1),
        ));
        (credentials.ca_pem, stop)
    }

    async fn token(dir: &std::path::Path, action: TokenAction) -> anyhow::Result<String> {
        let args = TokenArgs {
            data_dir: dir.to_path_buf(),
            kubeconfig: None,
            action,
        };
        let mut out = Vec::new();
        run_to(args, &mut out).await?;
        Ok(String::from_utf8(out).expect("text"))
    }

    #[tokio::test]
    async fn tokens_are_created_listed_and_revoked_through_the_api() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_pem, _stop) = serve(dir.path()).await;
        let created = token(
            dir.path(),
            TokenAction::Create {
                ttl: Duration::from_secs(3600),
                description: "for the lab".into(),
            },
        )
        .await
        .expect("created");
        let parsed = JoinToken::parse(&created, false).expect("a full token");
        assert_eq!(
            parsed.ca_hash,
            Some(petset_pki::ca_hash(&ca_pem).expect("hash"))
        );
        let id = parsed.credential.id.clone();

        let listed = token(dir.path(), TokenAction::List).await.expect("listed");
        let line = listed
            .lines()
            .find(|line| line.starts_with(&id))
            .unwrap_or_else(|| panic!("{id} in {listed}"));
        assert!(line.contains("for the lab"), "{line}");
        assert!(
            line.split_whitespace()
                .nth(1)
                .is_some_and(|ttl| ttl.ends_with('m') || ttl.ends_with('h')),
            "{line}"
        );
        assert!(!listed.contains(&parsed.credential.secret), "{listed}");

        let revoked = token(
            dir.path(),
            TokenAction::Revoke {
                id: created
                    .trim()
                    .rsplit("::")
                    .next()
                    .expect("credential")
                    .to_string(),
            },
        )
        .await
        .expect("revoked");
        assert_eq!(revoked, format!("bootstrap token \"{id}\" deleted\n"));
        let listed = token(dir.path(), TokenAction::List).await.expect("listed");
        assert!(!listed.contains(&id), "{listed}");
        let error = token(dir.path(), TokenAction::Revoke { id: id.clone() })
            .await
            .expect_err("gone");
        assert_eq!(
            error.to_string(),
            format!("bootstrap token \"{id}\" not found")
        );
    }

    #[test]
    fn ttls_read_as_go_durations() {
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("0"), Ok(Duration::ZERO));
        for bad in ["", "24", "h", "1d", "-1h", "1.5h", "99999999999999999999h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_table_aligns_columns_like_kubeadm() {
        let rows = [tokens::TokenRow {
            id: "abcdef".into(),
            ttl: "23h".into(),
            expires: "2026-01-02T00:00:00Z".into(),
            description: "<none>".into(),
        }];
        let mut out = Vec::new();
        write_table(&mut out, &rows).expect("written");
        assert_eq!(
            String::from_utf8(out).expect("text"),
            "TOKEN    TTL   EXPIRES                DESCRIPTION\n\
             abcdef   23h   2026-01-02T00:00:00Z   <none>\n"
        );
    }
}
