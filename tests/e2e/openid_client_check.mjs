// openid-client v6 (an OpenID Certified relying-party library) against the
// Login Portal, as an app would use it: discovery, the authorization code flow
// with PKCE (S256), state and nonce, the token exchange with the library's ID
// token validation (signature included), userinfo, a refresh, and the
// RP-initiated logout URL. tests/e2e/test_e2e_openid_client.py drives the
// browser between the two halves.
//
//   node openid_client_check.mjs start CHECKS_FILE
//       prints {"authorization_url": …}; keeps the PKCE verifier, state and nonce in CHECKS_FILE
//   node openid_client_check.mjs finish CHECKS_FILE CALLBACK_URL
//       prints what the library validated and fetched
//
// Settings (environment): ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI,
// POST_LOGOUT_REDIRECT_URI. Any error the library raises is printed as
// {"error": …} and the exit status is 1.
import { readFile, writeFile } from 'node:fs/promises'
import * as client from 'openid-client'

const env = process.env
const SCOPE = 'openid profile email offline_access'

function configuration () {
  return client.discovery(
    new URL(env.ISSUER),
    env.CLIENT_ID,
    undefined,
    client.ClientSecretBasic(env.CLIENT_SECRET),
    {
      // The test's issuer is plain http on 127.0.0.1; the library refuses that by default.
      // Non-repudiation checks: validate the ID token's signature against jwks_uri too.
      execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
      timeout: 10
    }
  )
}

async function start (checksFile) {
  const config = await configuration()
  const checks = {
    codeVerifier: client.randomPKCECodeVerifier(),
    nonce: client.randomNonce(),
    state: client.randomState(),
    logoutState: client.randomState()
  }
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: env.REDIRECT_URI,
    scope: SCOPE,
    code_challenge: await client.calculatePKCECodeChallenge(checks.codeVerifier),
    code_challenge_method: 'S256',
    nonce: checks.nonce,
    state: checks.state
  })
  await writeFile(checksFile, JSON.stringify(checks))
  return { authorization_url: url.href }
}

async function finish (checksFile, callbackUrl) {
  const config = await configuration()
  const checks = JSON.parse(await readFile(checksFile, 'utf8'))
  const tokens = await client.authorizationCodeGrant(config, new URL(callbackUrl), {
    pkceCodeVerifier: checks.codeVerifier,
    expectedNonce: checks.nonce,
    expectedState: checks.state,
    idTokenExpected: true
  })
  const claims = tokens.claims()
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
  let refreshed = null
  if (tokens.refresh_token) {
    const next = await client.refreshTokenGrant(config, tokens.refresh_token)
    refreshed = {
      id_token_claims: next.claims() ?? null,
      refresh_token_rotated: Boolean(next.refresh_token) && next.refresh_token !== tokens.refresh_token,
      userinfo: await client.fetchUserInfo(config, next.access_token, claims.sub)
    }
  }
  const endSession = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: env.POST_LOGOUT_REDIRECT_URI,
    state: checks.logoutState
  })
  return {
    id_token_claims: claims,
    token_type: tokens.token_type,
    scope: tokens.scope ?? null,
    expires_in: tokens.expiresIn() ?? null,
    refresh_token_issued: Boolean(tokens.refresh_token),
    userinfo,
    refreshed,
    end_session_url: endSession.href,
    logout_state: checks.logoutState
  }
}

function describe (error) {
  const cause = error.cause
  const plain = cause && typeof cause === 'object' && cause.constructor === Object
  return {
    error: error.name,
    code: error.code ?? null,
    message: error.message,
    cause: cause === undefined ? null : plain ? cause : String(cause)
  }
}

const [command, ...args] = process.argv.slice(2)
const commands = { start, finish }
try {
  if (!commands[command]) throw new TypeError(`usage: ${Object.keys(commands).join('|')} CHECKS_FILE [CALLBACK_URL]`)
  console.log(JSON.stringify(await commands[command](...args)))
} catch (error) {
  console.log(JSON.stringify(describe(error)))
  process.exitCode = 1
}
