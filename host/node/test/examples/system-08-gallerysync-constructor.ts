// 001_b6537456dcabf801.reflowed.md, "GallerySync constructor": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
let gallerySync = new cloudSync.GallerySync()
