using System;
using TorchSharp;
using static TorchSharp.torch;

var lin = nn.Linear(3, 1);
lin.register_forward_pre_hook((m, x) => { Console.WriteLine("pre"); return null!; });
var y = lin.call(ones(2, 3));
Console.WriteLine(y.dtype);
