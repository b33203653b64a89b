// 001_b6537456dcabf801.reflowed.md, "Download constructor": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
let download = new cloudSync.Download()
