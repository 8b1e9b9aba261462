"""Asks STS who we are, with credentials from boto3's default chain.

Run by the integration tests with an environment that points botocore at
the daemon (container endpoint or IMDS) and at moto for STS itself. Prints
one JSON object: the caller's ARN and how many calls were made.

    python3 whoami.py [CALLS]
"""
import json
import os
import sys

import boto3


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    session = boto3.session.Session()
    sts = session.client("sts", endpoint_url=os.environ["AWS_ENDPOINT_URL_STS"])
    arn = None
    for _ in range(calls):
        arn = sts.get_caller_identity()["Arn"]
    credentials = session.get_credentials()
    print(json.dumps({"arn": arn, "calls": calls, "method": credentials.method}))


if __name__ == "__main__":
    main()
