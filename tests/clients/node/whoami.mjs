// Asks STS who we are with the JavaScript SDK v3's default Node credential
// chain, as an unmodified program would. STS itself is moto
// (AWS_ENDPOINT_URL_STS); the credentials come from wherever the environment
// points the chain: the daemon's container endpoint, its IMDS, or a
// credential_process profile. Prints {"arn": …}.
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";

const client = new STSClient({
  region: process.env.AWS_REGION ?? "us-east-1",
  endpoint: process.env.AWS_ENDPOINT_URL_STS,
});
const identity = await client.send(new GetCallerIdentityCommand({}));
console.log(JSON.stringify({ arn: identity.Arn }));
