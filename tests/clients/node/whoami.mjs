// Asks STS who we are with the JavaScript SDK v3's default Node credential
// chain, as an unmodified program would: region, endpoint (moto, through
// AWS_ENDPOINT_URL_STS or the profile's endpoint_url) and credentials all come
// from the environment and the shared files, wherever they point the chain:
// the daemon's container endpoint, its IMDS, or a credential_process profile.
// Prints {"arn": …}.
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";

const client = new STSClient({});
const identity = await client.send(new GetCallerIdentityCommand({}));
console.log(JSON.stringify({ arn: identity.Arn }));
