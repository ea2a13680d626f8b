// The conformance matrix on one target (test/store/targets.ts): every suite on 'redis'.

import { describeMatrix } from './targets.ts';

await describeMatrix('redis');
