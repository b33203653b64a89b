// 001_b6537456dcabf801.reflowed.md, "FileSync constructor": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
let fileSync = new cloudSync.FileSync("com.ohos.demo")
