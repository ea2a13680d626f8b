// The conformance matrix on one target (test/store/targets.ts): every suite on 'sqlite-workers'.

import { describeMatrix } from './targets.ts';

await describeMatrix('sqlite-workers');
