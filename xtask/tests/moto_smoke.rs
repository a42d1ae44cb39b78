//! Smoke test of the test infrastructure: under `cargo xtask test` a real S3 server (moto) is
//! reachable, and it honours create-if-absent, which finn's checkpoint protocol relies on.

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{Error, ObjectStore, ObjectStoreExt, PutMode, PutPayload};

/// The S3 endpoint the xtask exported, or `None` (with the reason printed) under plain `cargo test`.
fn endpoint() -> Option<String> {
    match std::env::var("FINN_TEST_S3_ENDPOINT") {
        Ok(endpoint) => Some(endpoint),
        Err(_) if std::env::var_os("FINN_XTASK").is_some() => {
            panic!("FINN_TEST_S3_ENDPOINT must be set under `cargo xtask test`")
        }
        Err(_) => {
            eprintln!("skipped: FINN_TEST_S3_ENDPOINT is not set (run `cargo xtask test`)");
            None
        }
    }
}

#[tokio::test]
async fn moto_puts_gets_and_refuses_a_second_create() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = std::env::var("FINN_TEST_S3_BUCKET").unwrap_or_else(|_| "finn-test".to_owned());
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_region("us-east-1")
        .with_bucket_name(bucket)
        .with_access_key_id("finn-test")
        .with_secret_access_key("finn-test")
        .build()
        .expect("a valid S3 configuration");

    let key = Path::from(format!("xtask-smoke/{}/object", std::process::id()));
    store
        .put_opts(
            &key,
            PutPayload::from_static(b"first"),
            PutMode::Create.into(),
        )
        .await
        .expect("the first create succeeds");
    let body = store
        .get(&key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&body[..], b"first");

    let second = store
        .put_opts(
            &key,
            PutPayload::from_static(b"second"),
            PutMode::Create.into(),
        )
        .await;
    assert!(
        matches!(second, Err(Error::AlreadyExists { .. })),
        "a second create must be refused, got {second:?}"
    );
    let body = store
        .get(&key)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&body[..], b"first", "a refused create must not overwrite");
}
