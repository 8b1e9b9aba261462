//! What the daemon reads out of an ARN without asking anyone: the account.

/// The account id inside an IAM or STS ARN (`arn:aws:sts::123456789012:…`),
/// if it is one: twelve digits in the fifth field.
pub fn account(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_comes_from_the_fifth_field() {
        assert_eq!(
            account("arn:aws:sts::123456789012:assumed-role/dev/alice"),
            Some("123456789012")
        );
        assert_eq!(account("arn:aws:iam::12345:role/x"), None);
        assert_eq!(account("nonsense"), None);
    }
}
