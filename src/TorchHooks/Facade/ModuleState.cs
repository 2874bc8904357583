using System;
using System.Collections.Generic;
using TorchSharp.Modules;
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
                // named_parameters() skips disposed tensors, so read the registrations themselves. (A TorchSharp without
                // these fields: only the handle is checked, and the native error surfaces on use.)
                if (s_submodules is { } subs && s_paramValues is { } ps && s_bufferValues is { } bs)
                    return AnyDisposed(module, subs, ps, bs, depth: 0);
            }
            catch (Exception) { return true; }   // the tree cannot even be walked
            return false;
        }

        /// <summary>The registrations read through compiled accessors, recursively (reflection per module made wrapping slow).</summary>
        private static bool AnyDisposed(torch.nn.Module module, Func<torch.nn.Module, ICollection<torch.nn.Module>?> subs,
            Func<torch.nn.Module, ICollection<Parameter>?> ps, Func<torch.nn.Module, ICollection<(torch.Tensor, bool)>?> bs, int depth)
        {
            if (depth > 10_000) throw new InvalidOperationException("The module tree is a cycle.");
            if (ps(module) is { } parameters)
                foreach (var p in parameters) if (p is { IsInvalid: true }) return true;
            if (bs(module) is { } buffers)
                foreach (var (b, _) in buffers) if (b is { IsInvalid: true }) return true;
            if (subs(module) is { } children)
                foreach (var child in children) if (child is not null && AnyDisposed(child, subs, ps, bs, depth + 1)) return true;
            return false;
        }

        private static readonly Func<torch.nn.Module, ICollection<torch.nn.Module>?>? s_submodules = Values<torch.nn.Module>("_internal_submodules");
        private static readonly Func<torch.nn.Module, ICollection<Parameter>?>? s_paramValues = Values<Parameter>("_internal_params");
        private static readonly Func<torch.nn.Module, ICollection<(torch.Tensor, bool)>?>? s_bufferValues = Values<(torch.Tensor, bool)>("_internal_buffers");

        /// <summary><c>m =&gt; m.{field}?.Values</c> compiled, for a TorchSharp registration dictionary; null if TorchSharp has no such field.</summary>
        private static Func<torch.nn.Module, ICollection<T>?>? Values<T>(string name)
        {
            var field = typeof(torch.nn.Module).GetField(name, BindingFlags.Instance | BindingFlags.NonPublic);
            var values = field?.FieldType.GetProperty("Values");
            if (field is null || values is null || !typeof(ICollection<T>).IsAssignableFrom(values.PropertyType)) return null;
            var m = Expression.Parameter(typeof(torch.nn.Module), "m");
            var dict = Expression.Variable(field.FieldType, "d");
            var body = Expression.Block(new[] { dict },
                Expression.Assign(dict, Expression.Field(m, field)),
                Expression.Condition(Expression.Equal(dict, Expression.Constant(null, field.FieldType)),
                    Expression.Constant(null, typeof(ICollection<T>)),
                    Expression.Convert(Expression.Property(dict, values), typeof(ICollection<T>))));
            return Expression.Lambda<Func<torch.nn.Module, ICollection<T>?>>(body, m).Compile();
        }

        public static ObjectDisposedException Disposed(torch.nn.Module module, string what, Exception? inner = null)
        {
            var message = $"{what}: the {module.GetType().Name} was disposed (its parameters and native module are gone). " +
                "Use a live model (disposing a facade never disposes its model).";
            return inner is null ? new ObjectDisposedException(module.GetType().Name, message) : new ObjectDisposedException($"{message} Object name: '{module.GetType().Name}'.", inner);
        }
    }
}
