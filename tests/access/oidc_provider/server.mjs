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
    scopes: ['openid', ...(config.extraScopes ?? []), ...config.resourceScope.split(' ')],
    // People who sign in interactively (the patient's space's tests): any password, the
    // account's claims from the configuration, no consent screen for the configured clients.
    ...(config.accounts
      ? {
          findAccount: (_ctx, id) =>
            config.accounts[id]
              ? { accountId: id, claims: () => ({ sub: id, ...config.accounts[id] }) }
              : undefined,
          claims: { openid: ['sub'], vault: Object.keys(Object.values(config.accounts)[0] ?? {}) },
          conformIdTokenClaims: false,
          loadExistingGrant: async (ctx) => {
            const grant = new ctx.oidc.provider.Grant({
              clientId: ctx.oidc.client.clientId,
              accountId: ctx.oidc.session.accountId,
            });
            grant.addOIDCScope('openid vault');
            grant.addOIDCClaims(['sub', ...Object.keys(Object.values(config.accounts)[0] ?? {})]);
            await grant.save();
            return grant;
          },
        }
      : {}),
    features: {
      devInteractions: { enabled: Boolean(config.accounts) },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Only machine clients get the vault's JWT access tokens; people signing in
        // interactively get an ID token (the vault keeps it; the browser never sees it).
        defaultResource: (_ctx, client) =>
          client?.grantTypes?.includes('client_credentials') ? config.resource : undefined,
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
