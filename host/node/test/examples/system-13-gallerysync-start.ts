// 001_b6537456dcabf801.reflowed.md, "GallerySync start": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
import { BusinessError } from '@kit.BasicServicesKit';
let gallerySync = new cloudSync.GallerySync();

gallerySync.start((err: BusinessError) => {
if (err) {
console.error("start sync failed with error message: " + err.message + ", error code: " + err.code);
} else {
console.info("start sync successfully");
}
});
