using System.Runtime.CompilerServices;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Parameters whose storage a concern releases between calls (weight offload: the <c>Parameter</c> object stays, its
    /// data is an empty tensor while the module is not running), with the shape they stand for — what Accelerate's
    /// offloaded parameters keep by living on the <c>meta</c> device. Readers that count parameters (the model summary)
    /// ask <see cref="Numel"/>, so a released parameter counts as the tensor it stands for; neither side names the other.
    /// </summary>
    internal static class ReleasedParameters
    {
        private static readonly ConditionalWeakTable<torch.Tensor, long[]> s_shapes = new();

        /// <summary><paramref name="parameter"/>'s storage may be released from now on; it stands for a tensor of <paramref name="shape"/>.</summary>
        public static void Mark(torch.Tensor parameter, long[] shape) => s_shapes.AddOrUpdate(parameter, (long[])shape.Clone());

        /// <summary><paramref name="parameter"/> holds its own data again.</summary>
        public static void Unmark(torch.Tensor parameter) => s_shapes.Remove(parameter);

        /// <summary>The number of elements <paramref name="tensor"/> stands for: its own, or those of the shape it was marked with.</summary>
        public static long Numel(torch.Tensor tensor)
        {
            if (!s_shapes.TryGetValue(tensor, out var shape)) return tensor.numel();
            long n = 1;
            foreach (var d in shape) n *= d;
            return n;
        }
    }
}
