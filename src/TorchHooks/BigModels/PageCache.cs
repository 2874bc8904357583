using System;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace TorchHooks
{
    /// <summary>
    /// Advice to the kernel's page cache about a checkpoint file's bytes (Linux): <see cref="WillNeed"/> starts reading a
    /// range from the disk in the background (<c>posix_fadvise(POSIX_FADV_WILLNEED)</c>), in large requests, so a read
    /// ahead that then touches the range's pages waits for I/O already in flight instead of faulting them in a readahead
    /// window at a time. Advice only: elsewhere, or if the call fails, nothing happens.
    /// </summary>
    internal static class PageCache
    {
        private const int POSIX_FADV_WILLNEED = 3;

        [DllImport("libc", EntryPoint = "posix_fadvise")]
        private static extern int PosixFadvise(int fd, long offset, long length, int advice);

        private static bool s_unavailable;

        /// <summary>Asks the kernel to read <paramref name="length"/> bytes at <paramref name="offset"/> of <paramref name="file"/> into the page cache, in the background.</summary>
        public static void WillNeed(SafeFileHandle file, long offset, long length)
        {
            if (s_unavailable || !OperatingSystem.IsLinux() || length <= 0) return;
            bool added = false;
            try
            {
                file.DangerousAddRef(ref added);
                PosixFadvise((int)file.DangerousGetHandle(), offset, length, POSIX_FADV_WILLNEED);   // advice: a failure changes nothing
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { s_unavailable = true; }
            finally { if (added) file.DangerousRelease(); }
        }
    }
}
