/* global document, location, fetch, URLSearchParams, URL */
// The stub bank's consent UI (demo mode). A real bank shows the consent it holds for the third
// party; this stub reads what to show from its own URL. Approve or Deny sends the browser back
// to the return URL with `result=ok` or `result=nok` — a top-level navigation, which carries
// the redirect's SameSite=Lax cookie but not the fintech's SameSite=Strict session cookie.

const $ = (selector) => document.querySelector(selector);
const RETURN_PATH = /^\/api\/v1\/redirects\/[A-Za-z0-9_-]{12}\.[A-Za-z0-9_-]{22}\/return$/;

/** Only Tessera's own return endpoint: the stub must not become an open redirector. */
function returnUrlOf(params, publicUrl) {
  try {
    const u = new URL(params.get('return') ?? '');
    if (u.origin !== publicUrl || !RETURN_PATH.test(u.pathname) || u.search !== '' || u.hash !== '') return null;
    return u;
  } catch {
    return null;
  }
}

function refuse(message) {
  const p = $('#problem');
  p.textContent = message;
  p.hidden = false;
  $('#approve').disabled = true;
  $('#deny').disabled = true;
}

async function main() {
  const params = new URLSearchParams(location.search);
  const config = await (await fetch('/demo/config.json', { cache: 'no-store' })).json();
  $('#consent-ref').textContent = params.get('consentId') ?? '—';

  if (params.get('type') === 'pis') {
    $('#pis').hidden = false;
    const amount = Number(params.get('amount'));
    const currency = params.get('currency') ?? 'EUR';
    $('#amount').textContent = Number.isFinite(amount) ? new Intl.NumberFormat('en-GB', { style: 'currency', currency }).format(amount) : '—';
    $('#creditor-name').textContent = params.get('creditorName') ?? '—';
    $('#creditor-iban').textContent = (params.get('creditorIban') ?? '').replace(/(.{4})/g, '$1 ').trim();
    document.title = 'Stub Bank · approve a payment';
  } else {
    $('#ais').hidden = false;
  }

  const back = returnUrlOf(params, config.publicUrl);
  if (back === null) {
    refuse('This consent request has no valid return address, so it cannot be answered.');
    return;
  }
  const answer = (result) => {
    $('#approve').disabled = true;
    $('#deny').disabled = true;
    back.searchParams.set('result', result);
    location.assign(back.toString());
  };
  $('#approve').addEventListener('click', () => answer('ok'));
  $('#deny').addEventListener('click', () => answer('nok'));
}

main().catch((err) => refuse(`The consent page failed to load: ${err}`));
