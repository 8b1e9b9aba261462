//! Asks STS who we are with Rust `aws-config`'s default credential chain, as
//! an unmodified Rust program would. The integration tests run it with an
//! environment that points the chain at the daemon (container endpoint, IMDS
//! or a `credential_process` profile) and STS at moto
//! (`AWS_ENDPOINT_URL_STS`). Prints `{"arn": …}`.

use aws_config::BehaviorVersion;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let sts = aws_sdk_sts::Client::new(&config);
    let identity = sts.get_caller_identity().send().await?;
    println!("{}", serde_json::json!({ "arn": identity.arn() }));
    Ok(())
}
