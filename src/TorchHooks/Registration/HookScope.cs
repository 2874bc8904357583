using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Temporary hooks: disposing the scope removes exactly the hooks it added, never hooks registered
    /// elsewhere (unlike helpers that clear every hook of a module). Nested scopes are independent.
    /// </summary>
    public sealed class HookScope : IDisposable
    {
        [ThreadStatic] private static HookScope? t_recording;
        private readonly List<RemovableHandle> _handles = new();

        /// <summary>
        /// Runs <paramref name="register"/> and puts every hook it registers on this thread — on any module, of
        /// any signature, global hooks and precision policies too — into one new scope. All or none: if
        /// <paramref name="register"/> throws (a bad path, a hook of the wrong signature), the hooks it already
        /// registered are removed before the exception propagates.
        /// </summary>
        public static HookScope Collect(Action register)
        {
            if (register is null) throw new ArgumentNullException(nameof(register), "Pass the registrations, e.g. () => m[\"encoder.0\"].register_forward_hook((mod, x, y) => null).");
            var scope = new HookScope();
            var outer = t_recording;
            t_recording = scope;
            try { register(); }
            catch
            {
                t_recording = outer;
                scope.Dispose();
                throw;
            }
            finally { t_recording = outer; }
            return scope;
        }

        /// <summary>Called for every new handle: the scope being collected on this thread (if any) takes it.</summary>
        internal static void Record(RemovableHandle handle) => t_recording?._handles.Add(handle);

        /// <summary>The handles of the hooks this scope added, in registration order.</summary>
        public IReadOnlyList<RemovableHandle> Handles => _handles;

        /// <summary>Adds an already registered hook to the scope, so the scope removes it too.</summary>
        public RemovableHandle Add(RemovableHandle handle)
        {
            _handles.Add(handle ?? throw new ArgumentNullException(nameof(handle), "Pass the handle a register_* call returned."));
            return handle;
        }

        /// <summary>Removes the hooks this scope added. Idempotent.</summary>
        public void Dispose()
        {
            for (int i = _handles.Count - 1; i >= 0; i--) _handles[i].remove();
        }

        /// <summary>
        /// Registers all hooks or none: every path is resolved first, and if a registration fails the
        /// ones already made are removed before the exception propagates.
        /// </summary>
        internal static HookScope Create(Func<string, HookPoint> resolve,
            IEnumerable<(string path, ForwardHook<Tensor, Tensor> hook)>? fwd,
            IEnumerable<(string path, ForwardPreHook<Tensor> hook)>? pre,
            bool always_call)
        {
            var fwdList = fwd?.ToList() ?? new();
            var preList = pre?.ToList() ?? new();
            var fwdPoints = fwdList.Select(h => resolve(h.path)).ToList();
            var prePoints = preList.Select(h => resolve(h.path)).ToList();
            var scope = new HookScope();
            try
            {
                for (int i = 0; i < preList.Count; i++) scope.Add(prePoints[i].register_forward_pre_hook(preList[i].hook));
                for (int i = 0; i < fwdList.Count; i++) scope.Add(fwdPoints[i].register_forward_hook(fwdList[i].hook, always_call: always_call));
            }
            catch
            {
                scope.Dispose();
                throw;
            }
            return scope;
        }
    }
}
