/// `value` written in `radix`, with zeros in front up to `width` digits: what `printf`'s `%03d` or `%02x` write
/// (a negative value gets its sign in front of the zeros, the width counting digits only).
package func zeroPadded(_ value: some BinaryInteger, width: Int, radix: Int = 10, uppercase: Bool = false) -> String {
    let digits = String(value.magnitude, radix: radix, uppercase: uppercase)
    return (value < 0 ? "-" : "") + String(repeating: "0", count: max(0, width - digits.count)) + digits
}
