// An independent OpenID provider for the vault's tests (panva/oidc-provider), on loopback.
// Reads its configuration (signing keys, clients, the resource server) from the JSON file
// named on the command line, listens on a free port and prints {"issuer": ...} once ready.
import http from 'node:http';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    jwks: config.jwks,
    clients: config.clients,
    scopes: ['openid', ...config.resourceScope.split(' ')],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => config.resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: config.resourceScope,
          audience: config.audience,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: config.alg || 'ES256' } },
        }),
      },
    },
    // Claims the vault maps to its own roles and identifiers (VAULT_OIDC_ISSUERS).
    extraTokenClaims: (_ctx, token) => config.extraClaims?.[token.clientId],
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// Nothing to save: leave at once rather than wait for idle keep-alive connections.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
