//! The hosts of the AWS sign-in and console sites, which differ by partition
//! (`aws`, `aws-cn`, `aws-us-gov`), and within `aws` by region.

/// A partition with a public console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    Aws,
    China,
    GovCloud,
}

impl Partition {
    /// The partition named by an ARN (`arn:PARTITION:…`); `None` for an empty
    /// ARN (a profile's credentials without one).
    pub fn of_arn(arn: &str) -> Result<Option<Partition>, String> {
        if arn.is_empty() {
            return Ok(None);
        }
        let name = arn
            .strip_prefix("arn:")
            .and_then(|rest| rest.split(':').next())
            .ok_or_else(|| format!("{arn:?} is not an ARN"))?;
        match name {
            "aws" => Ok(Some(Partition::Aws)),
            "aws-cn" => Ok(Some(Partition::China)),
            "aws-us-gov" => Ok(Some(Partition::GovCloud)),
            other => Err(format!(
                "partition {other} (of {arn}) has no public console sign-in that assumed knows"
            )),
        }
    }

    /// The partition a region belongs to.
    pub fn of_region(region: &str) -> Result<Partition, String> {
        if region.starts_with("cn-") {
            Ok(Partition::China)
        } else if region.starts_with("us-gov-") {
            Ok(Partition::GovCloud)
        } else if region.contains("-iso") {
            Err(format!(
                "region {region} is in an isolated partition without a public console"
            ))
        } else {
            Ok(Partition::Aws)
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::China => "aws-cn",
            Partition::GovCloud => "aws-us-gov",
        }
    }

    /// Where the console opens when nothing names a region.
    pub fn default_region(self) -> &'static str {
        match self {
            Partition::Aws => "us-east-1",
            Partition::China => "cn-north-1",
            Partition::GovCloud => "us-gov-west-1",
        }
    }

    /// The federation endpoint (`getSigninToken`, `Action=login`) for a
    /// console in `region`. Only the `aws` partition has regional sign-in
    /// hosts; its global one is in us-east-1.
    pub fn federation_endpoint(self, region: &str) -> String {
        match self {
            Partition::Aws if region != "us-east-1" => {
                format!("https://{region}.signin.aws.amazon.com/federation")
            }
            Partition::Aws => "https://signin.aws.amazon.com/federation".into(),
            Partition::China => "https://signin.amazonaws.cn/federation".into(),
            Partition::GovCloud => "https://signin.amazonaws-us-gov.com/federation".into(),
        }
    }

    /// The console's host for `region`.
    pub fn console_host(self, region: &str) -> String {
        match self {
            Partition::Aws => format!("{region}.console.aws.amazon.com"),
            Partition::China => "console.amazonaws.cn".into(),
            Partition::GovCloud => "console.amazonaws-us-gov.com".into(),
        }
    }

    /// The console page of `service` (`console` is the home page) in `region`.
    pub fn service_url(self, service: &str, region: &str) -> String {
        format!(
            "https://{}/{service}/home?region={region}",
            self.console_host(region)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_their_partition() {
        assert_eq!(
            Partition::of_arn("arn:aws:iam::111111111111:role/dev"),
            Ok(Some(Partition::Aws))
        );
        assert_eq!(
            Partition::of_arn("arn:aws-cn:iam::111111111111:role/dev"),
            Ok(Some(Partition::China))
        );
        assert_eq!(
            Partition::of_arn("arn:aws-us-gov:iam::111111111111:role/dev"),
            Ok(Some(Partition::GovCloud))
        );
        assert_eq!(Partition::of_arn(""), Ok(None));
        let iso = Partition::of_arn("arn:aws-iso:iam::111111111111:role/dev").unwrap_err();
        assert!(iso.contains("aws-iso"), "{iso}");
        assert!(Partition::of_arn("role/dev").is_err());
    }

    /// Where `partition` signs in and which console page it opens for
    /// `service` in `region`, and which partition `region` itself names.
    fn landing(
        partition: Partition,
        service: &str,
        region: &str,
    ) -> (String, String, Result<Partition, String>) {
        (
            partition.federation_endpoint(region),
            partition.service_url(service, region),
            Partition::of_region(region),
        )
    }

    #[test]
    fn an_aws_cn_role_signs_in_and_lands_in_china() {
        let partition = Partition::of_arn("arn:aws-cn:iam::111111111111:role/dev")
            .unwrap()
            .unwrap();
        let region = partition.default_region();
        assert_eq!(region, "cn-north-1");
        assert_eq!(
            partition.federation_endpoint(region),
            "https://signin.amazonaws.cn/federation"
        );
        assert_eq!(
            landing(partition, "s3", "cn-northwest-1"),
            (
                "https://signin.amazonaws.cn/federation".into(),
                "https://console.amazonaws.cn/s3/home?region=cn-northwest-1".into(),
                Ok(Partition::China)
            )
        );
    }

    #[test]
    fn an_aws_us_gov_role_signs_in_and_lands_in_govcloud() {
        let partition = Partition::of_arn("arn:aws-us-gov:iam::111111111111:role/dev")
            .unwrap()
            .unwrap();
        assert_eq!(partition.default_region(), "us-gov-west-1");
        assert_eq!(
            landing(partition, "console", "us-gov-east-1"),
            (
                "https://signin.amazonaws-us-gov.com/federation".into(),
                "https://console.amazonaws-us-gov.com/console/home?region=us-gov-east-1".into(),
                Ok(Partition::GovCloud)
            )
        );
    }

    #[test]
    fn the_aws_partition_has_regional_sign_in_hosts() {
        let aws = Partition::Aws;
        assert_eq!(
            aws.federation_endpoint("us-east-1"),
            "https://signin.aws.amazon.com/federation"
        );
        assert_eq!(
            landing(aws, "ec2", "eu-west-1"),
            (
                "https://eu-west-1.signin.aws.amazon.com/federation".into(),
                "https://eu-west-1.console.aws.amazon.com/ec2/home?region=eu-west-1".into(),
                Ok(Partition::Aws)
            )
        );
        assert!(Partition::of_region("us-iso-east-1").is_err());
    }
}
