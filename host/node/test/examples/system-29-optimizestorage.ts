// 001_b6537456dcabf801.reflowed.md, "cloudSync.optimizeStorage": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
import { BusinessError } from '@kit.BasicServicesKit';

cloudSync.optimizeStorage().then(() => {
console.info("optimize storage successfully"); // The foreground UX waits for blocking operations to complete.
}).catch((err: BusinessError) => {
console.error("optimize storage failed with error message: " + err.message + ", error code: " + err.code);
});
