using System;
using System.Linq.Expressions;
using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>Whether a TorchSharp module was disposed (its native handle released), for clear errors.</summary>
    internal static class ModuleState
    {
        // TorchSharp 0.107 keeps the native module in the internal field Module.handle (a SafeHandle that Dispose
        // invalidates) and has no public "disposed" query. Read once through a compiled accessor; if a later
        // TorchSharp renames it, modules are simply never reported disposed (the native error then surfaces).
        private static readonly Func<torch.nn.Module, SafeHandle?>? s_handle = Compile();

        private static Func<torch.nn.Module, SafeHandle?>? Compile()
        {
            var field = typeof(torch.nn.Module).GetField("handle", BindingFlags.Instance | BindingFlags.NonPublic);
            if (field is null || !typeof(SafeHandle).IsAssignableFrom(field.FieldType)) return null;
            var m = Expression.Parameter(typeof(torch.nn.Module), "m");
            return Expression.Lambda<Func<torch.nn.Module, SafeHandle?>>(Expression.Convert(Expression.Field(m, field), typeof(SafeHandle)), m).Compile();
        }

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
            try
            {
                // named_parameters() skips disposed tensors, so read the registrations themselves.
                foreach (var m in System.Linq.Enumerable.Prepend(module.modules(), module))   // modules() leaves out the module itself
                    if (HasDisposed(s_params?.GetValue(m)) || HasDisposed(s_buffers?.GetValue(m))) return true;
            }
            catch (Exception) { return true; }   // the tree cannot even be walked
            return false;
        }

        private static readonly FieldInfo? s_params = typeof(torch.nn.Module).GetField("_internal_params", BindingFlags.Instance | BindingFlags.NonPublic);
        private static readonly FieldInfo? s_buffers = typeof(torch.nn.Module).GetField("_internal_buffers", BindingFlags.Instance | BindingFlags.NonPublic);

        /// <summary>An OrderedDict&lt;string, Parameter&gt; or OrderedDict&lt;string, (Tensor, bool)&gt; (read through Values: its non-generic enumerator throws).</summary>
        private static bool HasDisposed(object? registrations)
        {
            if (registrations?.GetType().GetProperty("Values")?.GetValue(registrations) is not System.Collections.IEnumerable values) return false;
            foreach (var item in values)
            {
                var value = item is System.Runtime.CompilerServices.ITuple tuple ? tuple[0] : item;
                if (value is torch.Tensor { IsInvalid: true }) return true;
            }
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
