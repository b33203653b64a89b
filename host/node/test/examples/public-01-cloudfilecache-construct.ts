// 000_488f537d2d8fcae8.txt, "CloudFileCache construct": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
let fileCache = new cloudSync.CloudFileCache();
