/// `value` written in `radix`, with zeros in front up to `width` digits: what `printf`'s `%03d` or `%02x` write.
package func zeroPadded(_ value: some BinaryInteger, width: Int, radix: Int = 10, uppercase: Bool = false) -> String {
    let digits = String(value, radix: radix, uppercase: uppercase)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}
