// 001_b6537456dcabf801.reflowed.md, "GallerySync off": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
let gallerySync = new cloudSync.GallerySync();

gallerySync.on('progress', (pg: cloudSync.SyncProgress) => {
console.info("syncState: " + pg.state);
});

gallerySync.off('progress');
