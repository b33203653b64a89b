// 001_b6537456dcabf801.reflowed.md, "cloudSync.getFileSyncState": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
import { BusinessError } from '@kit.BasicServicesKit';
import { fileUri } from '@kit.CoreFileKit';
let path = "/data/storage/el2/cloud/1.txt";
let uri = fileUri.getUriFromPath(path);
try {
let state = cloudSync.getFileSyncState(uri);
} catch (err) {
let error:BusinessError = err as BusinessError;
console.error("getFileSyncStatefailed with error:" + JSON.stringify(error));
}
