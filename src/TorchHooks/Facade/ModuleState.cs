using System;
using System.Collections.Generic;
using TorchSharp.Modules;
using System.Runtime.InteropServices;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>Whether a TorchSharp module was disposed (its native handle released), for clear errors.</summary>
    internal static class ModuleState
    {
        // TorchSharp 0.107 keeps the native module in the internal field Module.handle (a SafeHandle that Dispose
        // invalidates) and has no public "disposed" query: read through TorchSharpInternals (a TorchSharp without it
        // gets a one-time warning there, and modules are then recognized as disposed by their parameters only).
        private static readonly Func<torch.nn.Module, SafeHandle?>? s_handle = TorchSharpInternals.ModuleHandle;

        /// <summary>Cheap (per call): the native module handle was released.</summary>
        public static bool HandleReleased(torch.nn.Module module)
            => s_handle is { } get && get(module) is { } h && (h.IsInvalid || h.IsClosed);

        /// <summary>
        /// Thorough (on failure and when wrapping): the handle was released, or a parameter or buffer of the tree was
        /// disposed (TorchSharp 0.107's managed modules such as Linear keep their handle and dispose their tensors).
        /// </summary>
        public static bool IsDisposed(torch.nn.Module module)
        {
            if (HandleReleased(module)) return true;
            // named_parameters() skips disposed tensors, so read the registrations themselves (TorchSharpInternals; a
            // TorchSharp without these fields: only the handle is checked, and the native error surfaces on use).
            if (TorchSharpInternals.Submodules is { } subs && TorchSharpInternals.Parameters is { } ps && TorchSharpInternals.Buffers is { } bs)
                return AnyDisposed(module, subs, ps, bs, depth: 0);
            return false;
        }

        /// <summary>The registrations read through compiled accessors, recursively (reflection per module made wrapping slow).</summary>
        private static bool AnyDisposed(torch.nn.Module module, Func<torch.nn.Module, ICollection<torch.nn.Module>?> subs,
            Func<torch.nn.Module, ICollection<Parameter>?> ps, Func<torch.nn.Module, ICollection<(torch.Tensor, bool)>?> bs, int depth)
        {
            if (depth > 10_000) return false;   // a cycle: not known to be disposed
            if (ps(module) is { } parameters)
                foreach (var p in parameters) if (p is { IsInvalid: true }) return true;
            if (bs(module) is { } buffers)
                foreach (var (b, _) in buffers) if (b is { IsInvalid: true }) return true;
            if (subs(module) is { } children)
                foreach (var child in children) if (child is not null && AnyDisposed(child, subs, ps, bs, depth + 1)) return true;
            return false;
        }

        public static ObjectDisposedException Disposed(torch.nn.Module module, string what, Exception? inner = null)
        {
            var message = $"{what}: the {module.GetType().Name} was disposed (its parameters and native module are gone). " +
                "Use a live model (disposing a facade never disposes its model).";
            return inner is null ? new ObjectDisposedException(module.GetType().Name, message) : new ObjectDisposedException($"{message} Object name: '{module.GetType().Name}'.", inner);
        }
    }
}
