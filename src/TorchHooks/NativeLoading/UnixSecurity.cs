using System;
using System.Runtime.InteropServices;

namespace TorchHooks
{
    /// <summary>
    /// Ownership and permission checks for the folders and files TorchHooks loads native code from.
    /// .NET exposes a file's mode but not its owner, so this asks the kernel directly with <c>statx</c>,
    /// whose result layout is the same on every Linux architecture.
    /// </summary>
    internal static unsafe class UnixSecurity
    {
        private const int AtFdCwd = -100;
        private const int AtSymlinkNoFollow = 0x100;
        private const uint StatxType = 0x1, StatxMode = 0x2, StatxUid = 0x8;
        private const int TypeMask = 0xF000, TypeDirectory = 0x4000, TypeRegular = 0x8000;
        private const int GroupOrOtherWrite = 0x12; // S_IWGRP | S_IWOTH

        [DllImport("libc", SetLastError = true, EntryPoint = "statx")]
        private static extern int Statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte* buffer);

        [DllImport("libc", EntryPoint = "geteuid")]
        private static extern uint GetEffectiveUserId();

        /// <summary>The owner and mode bits of <paramref name="path"/> itself (a symbolic link is not followed).</summary>
        internal static (uint Owner, int Mode) Stat(string path)
        {
            byte* buffer = stackalloc byte[256];
            if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxMode | StatxUid, buffer) != 0)
                throw new InvalidOperationException($"Cannot check the owner and permissions of '{path}' (statx failed, errno {Marshal.GetLastPInvokeError()}); TorchHooks will not load native code from it.");
            uint owner = *(uint*)(buffer + 20);   // stx_uid
            int mode = *(ushort*)(buffer + 28);   // stx_mode
            return (owner, mode);
        }

        /// <summary>
        /// Throws unless <paramref name="path"/> is a real directory (or regular file) owned by the current user
        /// (or by root, where <paramref name="allowRootOwner"/>) that no other user can write.
        /// </summary>
        internal static void RequirePrivate(string path, bool directory, bool allowRootOwner = false)
        {
            var (owner, mode) = Stat(path);
            uint me = GetEffectiveUserId();
            int type = mode & TypeMask;
            string what = directory ? "folder" : "file";
            if (type != (directory ? TypeDirectory : TypeRegular))
                throw new InvalidOperationException($"'{path}' is not a plain {what} (a symbolic link or another kind of file); TorchHooks will not load native code through it. Remove it, or point XDG_CACHE_HOME at a private folder.");
            if (owner != me && !(allowRootOwner && owner == 0))
                throw new InvalidOperationException($"The {what} '{path}' belongs to user id {owner}, not to you (user id {me}); TorchHooks will not load native code from it. Remove it, or point XDG_CACHE_HOME at a folder of your own.");
            if ((mode & GroupOrOtherWrite) != 0)
                throw new InvalidOperationException($"The {what} '{path}' can be written by other users (mode {Convert.ToString(mode & 0xFFF, 8)}); TorchHooks will not load native code from it. Run 'chmod go-w {path}', or point XDG_CACHE_HOME at a private folder.");
        }
    }
}
