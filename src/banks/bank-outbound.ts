// The outbound-URL rules (src/net/outbound-policy.ts) as the bank client applies them: the URL's
// scheme and an address-literal host before anything is sent, and on every connection each
// address the bank's host name resolved to (bank-http.ts asks `checkAddress` from its lookup).

import { isIP } from 'node:net';
import { judgeUrl } from '../auth/federation/url-policy.ts';
import type { OutboundPolicy as SharedPolicy } from '../net/outbound-policy.ts';
import type { OutboundPolicy } from './bank-http.ts';

const bare = (h: string) => h.replace(/^\[|\]$/g, '').toLowerCase();

export function bankOutboundPolicy(shared: Pick<SharedPolicy, 'refusal' | 'devAllowHttpLoopback'>): OutboundPolicy {
  return {
    checkUrl(url) {
      const v = judgeUrl(url.toString(), 'the bank URL', shared.devAllowHttpLoopback);
      if (!v.ok) throw new Error(v.reason);
      // An address literal never goes through name resolution: judged here.
      const host = bare(url.hostname);
      if (isIP(host) !== 0) {
        const why = shared.refusal(host, host);
        if (why !== null) throw new Error(why);
      }
    },
    checkAddress(host, ip) {
      const why = shared.refusal(ip, host);
      if (why !== null) throw new Error(why);
    },
  };
}
