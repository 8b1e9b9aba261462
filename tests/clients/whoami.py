"""Asks STS who we are, with credentials from boto3's default chain.

Run by the integration tests with an environment that points botocore at
the daemon (container endpoint or IMDS) and at moto for STS itself
(AWS_ENDPOINT_URL_STS, or the profile's endpoint_url): an unmodified program.
Prints one JSON object: the caller's ARN, how many calls were made, and how
botocore found its credentials.

    python3 whoami.py [CALLS]
"""
import json
import sys

import boto3


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    session = boto3.session.Session()
    sts = session.client("sts")
    arn = None
    for _ in range(calls):
        arn = sts.get_caller_identity()["Arn"]
    credentials = session.get_credentials()
    print(json.dumps({"arn": arn, "calls": calls, "method": credentials.method}))


if __name__ == "__main__":
    main()
