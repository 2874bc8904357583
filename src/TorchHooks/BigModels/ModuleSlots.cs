using System;
using System.Collections.Generic;
using System.Reflection;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// Replaces a module's own parameter or buffer object — only where libtorch cannot change a tensor in place:
    /// a <c>meta</c> tensor cannot take CPU storage (<c>set_</c> refuses a storage of another device and
    /// <c>set_data</c> refuses the type change), so a parameter of an empty model gets a new <c>Parameter</c>, as
    /// PyTorch's <c>load_state_dict(assign=True)</c> and Accelerate's <c>set_module_tensor_to_device</c> do.
    /// TorchSharp's own <c>Module.to</c> does the same by reflection (<c>_toEpilog</c>): the registration goes
    /// through its protected <c>ConditionallyRegisterParameter</c>/<c>ConditionallyRegisterBuffer</c> (TorchSharpInternals), and every
    /// instance field of the module that held the old object is pointed at the new one. Fields are the
    /// module's own (any class deriving from Module), read by reflection on its type, not on TorchSharp's.
    /// </summary>
    internal static class ModuleSlots
    {
        /// <summary>Registers <paramref name="fresh"/> as <paramref name="module"/>'s parameter or buffer <paramref name="name"/> in place of <paramref name="old"/>.</summary>
        public static void Replace(torch.nn.Module module, string name, Tensor old, Tensor fresh, bool isParameter)
        {
            if (isParameter) TorchSharpInternals.RegisterParameter(module, name, (TorchSharp.Modules.Parameter)fresh);
            else TorchSharpInternals.RegisterBuffer(module, name, fresh);
            for (var type = module.GetType(); type is not null && type != typeof(object); type = type.BaseType)
                foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
                    if (field.FieldType.IsAssignableFrom(fresh.GetType()) && ReferenceEquals(field.GetValue(module), old))
                        field.SetValue(module, fresh);
        }
    }
}
