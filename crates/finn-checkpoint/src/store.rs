//! Choosing an object store by URL.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use crate::error::Error;

/// Settings for [`open_store`] beyond what the URL says.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Custom endpoint, e.g. `https://<account>.r2.cloudflarestorage.com` or
    /// `http://127.0.0.1:5055`. Setting one switches S3 to path-style requests unless
    /// [`StoreOptions::virtual_hosted_style`] says otherwise. Default: none (the provider's own).
    pub endpoint: Option<String>,
    /// Region (S3: `us-east-1`, `auto` for R2). Default: from the environment, else the provider's.
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (loopback test servers). Default: false.
    pub allow_http: bool,
    /// Read credentials and settings from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    /// Default: false here, but [`StoreOptions::from_env`] sets it.
    pub env: bool,
    /// Force virtual-hosted (`true`) or path-style (`false`) S3 requests. Default: path-style
    /// when an endpoint is set, virtual-hosted otherwise.
    pub virtual_hosted_style: Option<bool>,
    /// Static access key id (S3). Default: none.
    pub access_key_id: Option<String>,
    /// Static secret access key (S3). Default: none.
    pub secret_access_key: Option<String>,
    /// Any further provider setting by its object_store config key name (e.g.
    /// `aws_session_token`, `google_service_account`, `azure_storage_account_name`).
    pub extra: BTreeMap<String, String>,
}

impl StoreOptions {
    /// Options that take credentials and settings from the environment.
    pub fn from_env() -> Self {
        Self {
            env: true,
            ..Self::default()
        }
    }

    /// Sets the endpoint.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Allows plain HTTP.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Sets static S3 credentials.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret.into());
        self
    }

    /// Adds a provider setting by its config key name.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

/// Opens the object store a URL names, returning it and the key prefix inside it.
///
/// | URL | store | prefix |
/// |---|---|---|
/// | `s3://bucket/a/b` (also R2 and any S3-compatible server via [`StoreOptions::endpoint`]) | Amazon S3 | `a/b` |
/// | `gs://bucket/a` | Google Cloud Storage | `a` |
/// | `az://container/a` | Azure Blob Storage | `a` |
/// | `file:///var/lib/finn/remote` | local directory (created if missing) | empty |
/// | `memory://` or `memory:///a` | a new, private in-memory store | `a` |
///
/// Conditional puts (`PutMode::Create`), which the publish protocol relies on, are enabled on
/// every backend: S3 uses `If-None-Match: *` (object_store's default), the others have it natively.
pub fn open_store(
    url: &str,
    options: &StoreOptions,
) -> Result<(Arc<dyn ObjectStore>, String), Error> {
    let parsed = url::Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let config = |source: object_store::Error| Error::StoreConfig {
        url: url.to_owned(),
        source,
    };
    let prefix = parsed.path().trim_matches('/').to_owned();
    let store: Arc<dyn ObjectStore> = match parsed.scheme() {
        "s3" | "s3a" => {
            let mut b = if options.env {
                AmazonS3Builder::from_env()
            } else {
                AmazonS3Builder::new()
            };
            b = b.with_url(url);
            if let Some(endpoint) = &options.endpoint {
                b = b.with_endpoint(endpoint).with_virtual_hosted_style_request(
                    options.virtual_hosted_style.unwrap_or(false),
                );
            } else if let Some(v) = options.virtual_hosted_style {
                b = b.with_virtual_hosted_style_request(v);
            }
            if let Some(region) = &options.region {
                b = b.with_region(region);
            }
            if let Some(id) = &options.access_key_id {
                b = b.with_access_key_id(id);
            }
            if let Some(secret) = &options.secret_access_key {
                b = b.with_secret_access_key(secret);
            }
            b = b.with_allow_http(options.allow_http);
            for (k, v) in &options.extra {
                let key: AmazonS3ConfigKey = k
                    .parse()
                    .map_err(|_| bad(format!("unknown S3 setting {k:?}")))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(config)?)
        }
        "gs" => {
            let mut b = if options.env {
                GoogleCloudStorageBuilder::from_env()
            } else {
                GoogleCloudStorageBuilder::new()
            };
            b = b.with_url(url).with_client_options(client_options(options));
            for (k, v) in &options.extra {
                let key: GoogleConfigKey = k
                    .parse()
                    .map_err(|_| bad(format!("unknown GCS setting {k:?}")))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(config)?)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = if options.env {
                MicrosoftAzureBuilder::from_env()
            } else {
                MicrosoftAzureBuilder::new()
            };
            b = b.with_url(url).with_client_options(client_options(options));
            if let Some(endpoint) = &options.endpoint {
                b = b.with_endpoint(endpoint.clone());
            }
            for (k, v) in &options.extra {
                let key: AzureConfigKey = k
                    .parse()
                    .map_err(|_| bad(format!("unknown Azure setting {k:?}")))?;
                b = b.with_config(key, v);
            }
            Arc::new(b.build().map_err(config)?)
        }
        "file" => {
            let dir = parsed
                .to_file_path()
                .map_err(|()| bad("not a local path".to_owned()))?;
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            let fs = LocalFileSystem::new_with_prefix(&dir).map_err(config)?;
            return Ok((Arc::new(fs), String::new()));
        }
        "memory" => Arc::new(InMemory::new()),
        other => {
            return Err(bad(format!(
                "unsupported scheme {other:?}; use s3, gs, az, file or memory"
            )));
        }
    };
    Ok((store, prefix))
}

fn client_options(options: &StoreOptions) -> object_store::ClientOptions {
    object_store::ClientOptions::new().with_allow_http(options.allow_http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_prefixes() {
        let (_, p) = open_store("memory:///a/b", &StoreOptions::default()).unwrap();
        assert_eq!(p, "a/b");
        let opts = StoreOptions::default()
            .endpoint("http://127.0.0.1:1")
            .region("us-east-1")
            .allow_http(true)
            .credentials("k", "s");
        let (_, p) = open_store("s3://bucket/agents/one", &opts).unwrap();
        assert_eq!(p, "agents/one");
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path().join("remote")).unwrap();
        let (_, p) = open_store(url.as_str(), &opts).unwrap();
        assert_eq!(p, "");
        assert!(dir.path().join("remote").is_dir());
        assert!(matches!(
            open_store("ftp://x/y", &opts),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(
            open_store(
                "s3://b/p",
                &StoreOptions::default().with("no_such_key", "v")
            ),
            Err(Error::InvalidUrl { .. })
        ));
    }
}
